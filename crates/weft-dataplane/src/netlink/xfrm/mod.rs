//! XFRM (IPsec) policies and SAs over netlink: the ipsec backend installs
//! its policies itself, as flannel does, and reads back the SAs charon
//! negotiated. `message` holds the bytes (pure, tested without root), `io`
//! the socket.

mod io;
mod message;

pub use io::Xfrm;
pub use message::{MODE_TUNNEL, Malformed, PROTO_ESP, PolicyDir, XfrmPolicy, XfrmSa, XfrmTmpl};
