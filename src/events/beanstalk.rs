//! Puts a message into a beanstalkd tube: beanstalkd's text protocol, two commands
//! (`use`, then `put`) on a connection of their own, each bounded in time.
//!
//! Written here rather than taken from a crate: the Rust clients for beanstalkd block a
//! thread, and set no time limit on an answer, so a stalled server would hold one for ever.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// symfoni/deployer's job priority, delay and time to run.
const PRIORITY: u32 = 10;
const DELAY_S: u32 = 0;
const TIME_TO_RUN_S: u32 = 60;

/// Time allowed for connecting, and for each answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest answer line read.
const MAX_ANSWER: usize = 256;

/// Puts `message` into `tube` on the beanstalkd at `address`; the error says why not.
pub(super) async fn put(address: &str, tube: &str, message: &str) -> Result<(), String> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("beanstalkd at {address} did not accept a connection in time"))?
        .map_err(|error| format!("cannot connect to beanstalkd at {address}: {error}"))?;
    let mut connection = BufReader::new(stream);
    let answer = exchange(&mut connection, format!("use {tube}\r\n").as_bytes()).await?;
    if answer != format!("USING {tube}") {
        return Err(format!("beanstalkd answered `{answer}` to `use {tube}`"));
    }
    let mut put = format!(
        "put {PRIORITY} {DELAY_S} {TIME_TO_RUN_S} {}\r\n",
        message.len()
    )
    .into_bytes();
    put.extend_from_slice(message.as_bytes());
    put.extend_from_slice(b"\r\n");
    let answer = exchange(&mut connection, &put).await?;
    if answer.starts_with("INSERTED ") {
        Ok(())
    } else {
        Err(format!("beanstalkd answered `{answer}` to the put"))
    }
}

/// Sends `command` and reads the answer's line, without its `\r\n`.
async fn exchange(connection: &mut BufReader<TcpStream>, command: &[u8]) -> Result<String, String> {
    let talk = async {
        connection.get_mut().write_all(command).await?;
        let mut line = Vec::new();
        let mut limited = (&mut *connection).take(MAX_ANSWER as u64);
        limited.read_until(b'\n', &mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    let line = tokio::time::timeout(TIMEOUT, talk)
        .await
        .map_err(|_| "beanstalkd did not answer in time".to_owned())?
        .map_err(|error| format!("talking to beanstalkd: {error}"))?;
    if line.is_empty() {
        return Err("beanstalkd closed the connection".into());
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}
