//! The platforms autoredeploy deploys to. Each one lives in its own module and is the only
//! code that speaks its API.

pub mod rancher;
