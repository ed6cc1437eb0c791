//! Responses are either an upstream's streaming body or a small local reply.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub type ResponseBody = Either<Incoming, Full<Bytes>>;
