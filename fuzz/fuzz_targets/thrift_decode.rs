//! The user service's decoding of requests: any bytes give a request or an error, never a
//! panic. Two levels:
//!
//! - the argument structs of every UserService method, read with pilota's binary and compact
//!   protocols (what the server reads after the message header); one that decodes must encode
//!   and decode back to itself;
//! - whole frames through volo-thrift's server codec (TTHeader, framed or buffered, binary or
//!   compact, detected as the server detects them), both its in-memory and its streaming path.
//!
//! The first byte picks which.
//!
//! Known bugs of pilota 0.13 and volo-thrift 0.12, tolerated so that the rest stays fuzzed
//! (`FUZZ_STRICT=1` makes them crashes again). Each panics the server's task for the
//! connection, before any handler runs. Inputs in fuzz/regressions/thrift_decode:
//! - reads past the end of the frame: pilota's protocols over `Bytes` take a string, binary or
//!   message name with `split_to(len)` without checking `len` against what is left
//!   (`split-to-message-name`, `split-to-string-field`), and volo-thrift's TTHeader reader
//!   uses the panicking `get_u8`/`get_u16`/`split_to` of `bytes`;
//! - volo-thrift's framed reader adds 4 to a negative frame size turned `usize` (for a
//!   statistic, before it checks the size): "attempt to add with overflow" in a debug build
//!   (`framed-negative-size`);
//! - volo-thrift's TTHeader reader computes the header's remaining size with unchecked
//!   subtractions: "attempt to subtract with overflow" in a debug build, a wrapped size and
//!   then a read past the end in release (`ttheader-header-size-0`);
//! - pilota's streaming binary protocol (a connection without framing) allocates the length a
//!   string claims before reading it, with no bound: a negative length panics ("capacity
//!   overflow", `stream-negative-string-length`), a large one allocates up to 2 GiB;
//! - volo-thrift's TTHeader reader allocates the frame size it is told (up to 4 GiB, with no
//!   limit such as framed's 16 MiB) before reading it: no panic, but `--sanitizer address`
//!   stops on it as out-of-memory (`ttheader-size-2gib`);
//! - pilota's compact protocol skips an unknown boolean field without taking its value:
//!   "pending bool field ... not read" (`compact-unknown-bool`), and adds a field id delta to
//!   the previous id unchecked: "attempt to add with overflow" in a debug build, a wrapped id
//!   in release (`compact-field-id-overflow`).
#![no_main]

use std::{
    cell::RefCell,
    panic::{self, AssertUnwindSafe},
    sync::LazyLock,
};

use libfuzzer_sys::fuzz_target;
use metainfo::MetaInfo;
use pilota::{
    Bytes, BytesMut,
    thrift::{Message, binary::TBinaryProtocol, compact::TCompactInputProtocol},
};
use rpc::music::service::user::{
    UserServiceCreateUserArgsRecv, UserServiceGetUserArgsRecv, UserServiceLoginArgsRecv,
    UserServiceRequestRecv,
};
use volo::{METAINFO, util::buf_reader::BufReader};
use volo_thrift::{
    codec::default::{
        MakeZeroCopyCodec, ZeroCopyDecoder, framed::MakeFramedCodec, thrift::MakeThriftCodec,
        ttheader::MakeTTHeaderCodec,
    },
    context::ServerContext,
};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

/// Lets the known panics unwind (to [`tolerating`]) instead of aborting the fuzzer. The
/// harness itself reads no `Bytes` with a panicking call, so a panic located in `bytes` is the
/// decoders'.
static KNOWN_PANICS: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("FUZZ_STRICT").is_some() {
        return;
    }
    let fuzzer_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or_default();
        let known = file.contains("/bytes-")
            || (file.contains("/volo-thrift-") && file.contains("/codec/default/"))
            || file.ends_with("alloc/src/raw_vec/mod.rs")
            || (file.contains("/pilota-") && file.ends_with("thrift/compact.rs"));
        if !known {
            fuzzer_hook(info);
        }
    }));
});

/// Runs `f`, swallowing the known panics (any other aborts in the hook, before unwinding).
fn tolerating(f: impl FnOnce()) {
    LazyLock::force(&KNOWN_PANICS);
    let _ = panic::catch_unwind(AssertUnwindSafe(f));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    tolerating(|| decode(mode, rest));
});

fn decode(mode: u8, rest: &[u8]) {
    match mode % 8 {
        0 => args::<UserServiceCreateUserArgsRecv>(rest, false),
        1 => args::<UserServiceLoginArgsRecv>(rest, false),
        2 => args::<UserServiceGetUserArgsRecv>(rest, false),
        3 => args::<UserServiceCreateUserArgsRecv>(rest, true),
        4 => args::<UserServiceLoginArgsRecv>(rest, true),
        5 => args::<UserServiceGetUserArgsRecv>(rest, true),
        6 => frame(rest),
        _ => stream(rest),
    }
}

/// Decodes `T` with the binary (or compact) protocol; a value read is written and read back.
fn args<T: Message + PartialEq + std::fmt::Debug>(data: &[u8], compact: bool) {
    let mut bytes = Bytes::copy_from_slice(data);
    let value = if compact {
        T::decode(&mut TCompactInputProtocol::new(&mut bytes))
    } else {
        T::decode(&mut TBinaryProtocol::new(&mut bytes, true))
    };
    let Ok(value) = value else {
        return;
    };
    let mut out = BytesMut::new();
    value
        .encode(&mut TBinaryProtocol::new(&mut out, true))
        .expect("a decoded value encodes");
    let mut again = out.freeze();
    let back = T::decode(&mut TBinaryProtocol::new(&mut again, true)).expect("it decodes back");
    assert_eq!(value, back);
}

/// The server's codec (`DefaultMakeCodec::default()`: TTHeader over framed over thrift).
fn codec() -> impl ZeroCopyDecoder {
    MakeTTHeaderCodec::new(MakeFramedCodec::new(MakeThriftCodec::new()))
        .make_codec()
        .1
}

/// A frame already in memory. The server decodes inside a metainfo scope (TTHeader's values
/// land there), as here.
fn frame(data: &[u8]) {
    let mut cx = ServerContext::default();
    let mut bytes = Bytes::copy_from_slice(data);
    METAINFO.sync_scope(RefCell::new(MetaInfo::default()), || {
        let _ = codec().decode::<UserServiceRequestRecv, _>(&mut cx, &mut bytes);
    });
}

/// The path a connection takes: the decoder reads from the socket as it needs.
fn stream(data: &[u8]) {
    let mut cx = ServerContext::default();
    let mut reader = BufReader::new(data);
    let mut decoder = codec();
    let decode = decoder.decode_async::<UserServiceRequestRecv, _, _>(&mut cx, &mut reader);
    let _ = RUNTIME.block_on(METAINFO.scope(RefCell::new(MetaInfo::default()), decode));
}
