//! Compiles every `idl/*.thrift` into `$OUT_DIR`: Volo stubs, registry glue, routes, OpenAPI.
fn main() {
    idlgen::build("idl");
}
