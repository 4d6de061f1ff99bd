//! The answers of the routes that name a workload (`/notify/{container}`,
//! `/service/{name}`) to what a search by that name found.

use warp::http::StatusCode;
use warp::reply::Response;

use super::replies::{error_reply, unavailable};
use crate::domain::{ImageRef, UnitRef};
use crate::platform::Lookup;

/// What a request names.
#[derive(Debug, Clone, Copy)]
pub(super) enum Named {
    Container,
    Service,
}

impl Named {
    fn noun(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Service => "Swarm service",
        }
    }
}

/// The unit `lookup` found for `name`, with the image it runs, or the answer that refuses
/// the request of `client`.
pub(super) fn found(
    lookup: Lookup,
    named: Named,
    name: &str,
    client: &str,
) -> Result<(UnitRef, ImageRef), Box<Response>> {
    let noun = named.noun();
    let refusal = match lookup {
        Lookup::Found { unit, image } => return Ok((unit, image)),
        Lookup::NotFound => error_reply(
            StatusCode::NOT_FOUND,
            match named {
                Named::Container => "no_such_container",
                Named::Service => "no_such_service",
            },
            &format!("there is no {noun} named {name}"),
        ),
        Lookup::OptedOut(reason) => {
            tracing::info!(client, unit = name, %reason, "request refused: opted out");
            error_reply(StatusCode::FORBIDDEN, "opted_out", &reason)
        }
        Lookup::Unfit(reason) => error_reply(StatusCode::CONFLICT, "cannot_deploy", &reason),
        Lookup::Unavailable(reason) => {
            tracing::warn!(client, unit = name, %reason, "request refused: the engine cannot be asked");
            unavailable(&format!(
                "the Docker Engine cannot be asked about the {noun}"
            ))
        }
    };
    Err(Box::new(refusal))
}
