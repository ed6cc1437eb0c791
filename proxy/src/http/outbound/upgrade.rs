//! A request that asks to upgrade its connection (`Connection: upgrade`,
//! WebSocket) leaves the request/response stack here, after routing and the
//! route's filters: it is one long exchange, not a request to time out, retry
//! or hold a concurrency slot for (see `crate::http::upgrade`).

use std::future::Future;

use futures::future::Either;
use http::Response;

use super::service::{Routed, Serve};
use crate::http::ResponseBody;

pub struct UpgradeLayer;

impl<S> tower::Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Upgrade<S> {
        Upgrade { inner }
    }
}

pub struct Upgrade<S> {
    inner: S,
}

impl<'a, S> Serve<Routed<'a>> for Upgrade<S>
where
    S: for<'r> Serve<Routed<'r>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;

    fn call(&self, routed: Routed<'a>) -> impl Future<Output = Response<ResponseBody>> + Send {
        match crate::http::upgrade::wanted(&routed.req) {
            Some(protocol) => Either::Left(crate::http::upgrade::outbound(
                routed.cluster,
                routed.req,
                routed.authority,
                protocol,
            )),
            None => Either::Right(self.inner.call(routed)),
        }
    }
}
