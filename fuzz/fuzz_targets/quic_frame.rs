//! A QUIC stream's bytes, as a client controls them, through the verifier's frame
//! reader with its bounds (length, byte budget): frames are read until the stream ends
//! or a frame is refused; nothing may panic, and the budget is given back after every
//! frame, read or refused.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tandem_protocol::budget::ByteBudget;
use tandem_protocol::frame::{ReadBounds, read_within};
use tandem_protocol::pb;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let budget = ByteBudget::new(1 << 16);
    let bounds = ReadBounds {
        max_len: 1 << 16,
        message_timeout: Some(Duration::from_secs(10)),
        budget: Some(budget.clone()),
    };
    runtime().block_on(async {
        let mut stream = data;
        loop {
            let read = read_within::<pb::EdgeMessage, _>(&mut stream, &bounds).await;
            assert_eq!(budget.used(), 0, "bytes held after a frame");
            match read {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_wire();
                    break;
                }
            }
        }
    });
});
