//! A blocking VICI client over charon's unix socket: one request at a
//! time, streamed commands (`list-sas`) through their event, and a timeout
//! on every read so a hung charon costs a pass, not the agent.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::wire::{self, Message, Packet, WireError};

/// How long one answer may take. charon answers at once except for
/// commands that wait on the network, which weft never asks to wait.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// charon refuses bigger packets (`VICI_MESSAGE_SIZE_MAX`, 512 KiB).
const MAX_PACKET: usize = 512 * 1024;

/// What went wrong talking to charon.
#[derive(Debug, thiserror::Error)]
pub enum ViciError {
    #[error("cannot reach charon's VICI socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("VICI {cmd}: {source}")]
    Io {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("VICI {cmd}: {source}")]
    Wire {
        cmd: String,
        #[source]
        source: WireError,
    },
    #[error("VICI {cmd}: charon does not know this command or event")]
    Unknown { cmd: String },
    #[error("VICI {cmd}: charon refused: {errmsg}")]
    Refused { cmd: String, errmsg: String },
    #[error("VICI {cmd}: unexpected answer {what}")]
    Unexpected { cmd: String, what: String },
}

/// One connection to charon.
#[derive(Debug)]
pub struct Vici {
    stream: UnixStream,
}

impl Vici {
    pub fn connect(path: &Path) -> Result<Vici, ViciError> {
        let stream = UnixStream::connect(path).map_err(|source| ViciError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let io = |source| ViciError::Connect {
            path: path.to_owned(),
            source,
        };
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        Ok(Vici { stream })
    }

    fn send(&mut self, cmd: &str, p: &Packet) -> Result<(), ViciError> {
        let bytes = wire::encode(p).map_err(|source| ViciError::Wire {
            cmd: cmd.to_owned(),
            source,
        })?;
        self.stream
            .write_all(&bytes)
            .map_err(|source| ViciError::Io {
                cmd: cmd.to_owned(),
                source,
            })
    }

    fn recv(&mut self, cmd: &str) -> Result<Packet, ViciError> {
        let io = |source| ViciError::Io {
            cmd: cmd.to_owned(),
            source,
        };
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_PACKET {
            return Err(ViciError::Wire {
                cmd: cmd.to_owned(),
                source: WireError::TooLong(len),
            });
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).map_err(io)?;
        wire::decode(&body).map_err(|source| ViciError::Wire {
            cmd: cmd.to_owned(),
            source,
        })
    }

    /// Sends a command and returns its response.
    pub fn call(&mut self, cmd: &str, msg: Message) -> Result<Message, ViciError> {
        self.send(cmd, &Packet::CmdRequest(cmd.to_owned(), msg))?;
        match self.recv(cmd)? {
            Packet::CmdResponse(m) => Ok(m),
            Packet::CmdUnknown => Err(ViciError::Unknown {
                cmd: cmd.to_owned(),
            }),
            other => Err(unexpected(cmd, &other)),
        }
    }

    /// [`Vici::call`] for commands that answer `success`/`errmsg`.
    pub fn call_ok(&mut self, cmd: &str, msg: Message) -> Result<Message, ViciError> {
        let answer = self.call(cmd, msg)?;
        if answer.str("success").as_deref() == Some("yes") {
            Ok(answer)
        } else {
            Err(ViciError::Refused {
                cmd: cmd.to_owned(),
                errmsg: answer
                    .str("errmsg")
                    .unwrap_or_else(|| "no reason given".into()),
            })
        }
    }

    /// A streamed command: registers for `event`, sends `cmd`, collects the
    /// events until the response, unregisters.
    pub fn call_streamed(
        &mut self,
        cmd: &str,
        event: &str,
        msg: Message,
    ) -> Result<(Vec<Message>, Message), ViciError> {
        self.send(cmd, &Packet::EventRegister(event.to_owned()))?;
        match self.recv(cmd)? {
            Packet::EventConfirm => {}
            Packet::EventUnknown => {
                return Err(ViciError::Unknown {
                    cmd: event.to_owned(),
                });
            }
            other => return Err(unexpected(cmd, &other)),
        }
        self.send(cmd, &Packet::CmdRequest(cmd.to_owned(), msg))?;
        let mut events = Vec::new();
        let response = loop {
            match self.recv(cmd)? {
                Packet::Event(name, m) if name == event => events.push(m),
                Packet::Event(..) => {}
                Packet::CmdResponse(m) => break m,
                Packet::CmdUnknown => {
                    return Err(ViciError::Unknown {
                        cmd: cmd.to_owned(),
                    });
                }
                other => return Err(unexpected(cmd, &other)),
            }
        };
        self.send(cmd, &Packet::EventUnregister(event.to_owned()))?;
        match self.recv(cmd)? {
            Packet::EventConfirm => Ok((events, response)),
            other => Err(unexpected(cmd, &other)),
        }
    }
}

fn unexpected(cmd: &str, p: &Packet) -> ViciError {
    let what = match p {
        Packet::CmdRequest(..) => "command request",
        Packet::CmdResponse(_) => "command response",
        Packet::CmdUnknown => "unknown command",
        Packet::EventRegister(_) => "event registration",
        Packet::EventUnregister(_) => "event unregistration",
        Packet::EventConfirm => "event confirmation",
        Packet::EventUnknown => "unknown event",
        Packet::Event(..) => "event",
    };
    ViciError::Unexpected {
        cmd: cmd.to_owned(),
        what: what.to_owned(),
    }
}
