//! Feeds arbitrary bytes to both decoders, as a hostile client would.
//!
//! Run with `cargo +nightly fuzz run decode` from `protocol/` (on a stable toolchain,
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time=60`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use marquee_protocol::{ClientMessage, Codec, ServerMessage};

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Json, Codec::MsgPack] {
        if let Ok(msg) = codec.decode_client(data) {
            // Whatever decodes must encode again and decode to the same message.
            let frame = codec.encode(&msg).expect("a decoded message encodes");
            let back: ClientMessage = codec.decode(frame.as_bytes()).expect("re-decodes");
            assert_eq!(back, msg);
        }
        let _ = codec.decode::<ServerMessage>(data);
    }
});
