//! Remora's control plane: reads traffic policy, computes each proxy's xDS
//! configuration, and serves it over ADS.
//!
//! Config flows `source` -> `validate` -> `store` -> `translate` -> `xds`;
//! `control` wires the pieces together, `api` shows their state and takes
//! writes (which go back to the source), and `client` is the operator's side of
//! the API.
#![forbid(unsafe_code)]

pub mod api; //       HTTP API: status, resources, endpoints, stat, the dashboard; apply/delete; admin tokens
pub mod authority; // which proxies may serve a Service (endpoint authority)
pub mod ca; //        the certificate authority: root or operator CA, SPIFFE leaves from CSRs or made here (remora certificate create)
pub mod check; //     `remora check`: offline validation; --kubernetes: an installation in a cluster
pub mod cli; //       the command line (clap)
pub mod client; //    `remora apply/delete/get/status/stat`: requests to the API, printed answers
pub mod control; //   `run_control`: bind, load, watch, serve
pub mod demo; //      `remora demo`: a whole mesh on loopback, the split moving
pub mod duration; //  `90s`, `30m`, `24h`, `7d`: the CLI's and the API's durations
pub mod endpoints; // endpoint discovery: which addresses serve each Service
mod error; //         the library's error type
pub mod escape; //    outside text made safe to print and log
pub mod identity; //  bootstrap tokens and the Identity gRPC service (CSR -> certificate)
pub mod inject; //    sidecar injection: manifests in, manifests with remora-proxy out (pure)
pub mod install; //   `remora install`: the manifests of deploy/base, built in
pub mod kubernetes; // the Kubernetes source, TokenReview, the webhook's cluster side
pub mod problem; //   a config problem: file, resource, field, message
pub mod resources; // the typed resources users write (Service, HTTPRoute)
pub mod signal; //    waiting for Ctrl-C / SIGTERM
pub mod source; //    the `Source` trait; its file source: a watched directory of YAML <-> documents
pub mod store; //     the valid resources in force
pub mod traffic; //   proxies' traffic reports -> per-edge golden signals (`remora stat`)
pub mod translate; // store + proxy -> xDS resources (pure)
pub mod validate; //  documents -> valid resources + every problem (pure)
pub mod webhook; //   the mutating admission webhook (HTTPS): AdmissionReview in, the sidecar as a JSONPatch out
pub mod xds; //       the ADS server: versions, nonces, ACK/NACK, pushes

pub use control::{run_control, ControlOptions, ControlPlane};
pub use error::{Chain, Error};
