//! The contract of the user service (Thrift, through the generated client) and of the
//! gateway (HTTP, through a real client), one file per concern. Every test starts its own
//! stack (`contract_tests::Stack`): its own etcd, database, services and gateway.
//!
//! One test binary, not one per file: cargo runs test binaries one after another but the
//! tests of one binary in parallel, and the stack links once.

mod cluster;
mod discovery;
mod http_get_user;
mod http_login;
mod http_register;
mod interop;
mod storage;
mod thrift_create_user;
mod thrift_get_user;
mod thrift_login;
mod transport;
