//! The shop fixture compiled by idlgen, exactly as the root crate compiles `idl/`.

#[allow(unsafe_code)]
mod r#gen {
    include!(concat!(env!("OUT_DIR"), "/volo_gen.rs"));
}
pub use r#gen::volo_gen::*;

include!(concat!(env!("OUT_DIR"), "/idlgen.rs"));
