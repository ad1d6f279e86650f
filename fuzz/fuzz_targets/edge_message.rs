//! Decoding of every edge message from arbitrary bytes: nothing may panic, and what
//! decodes re-encodes to bytes that decode to the same message (compared as bytes: a
//! NaN in a `q` is not equal to itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tandem_protocol::pb;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = pb::EdgeMessage::decode(data) {
        let bytes = m.encode_to_vec();
        let again = pb::EdgeMessage::decode(bytes.as_slice()).expect("re-decodes");
        assert_eq!(again.encode_to_vec(), bytes);
    }
    let _ = pb::Open::decode(data);
    let _ = pb::Draft::decode(data);
    let _ = pb::DraftDistribution::decode(data);
});
