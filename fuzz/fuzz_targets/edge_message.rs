//! Decoding of every edge message from arbitrary bytes: nothing may panic, and what
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tandem_protocol::pb;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = pb::EdgeMessage::decode(data) {
        let again = pb::EdgeMessage::decode(m.encode_to_vec().as_slice()).expect("re-decodes");
        assert_eq!(again, m);
    }
    let _ = pb::Open::decode(data);
    let _ = pb::Draft::decode(data);
    let _ = pb::DraftDistribution::decode(data);
});
