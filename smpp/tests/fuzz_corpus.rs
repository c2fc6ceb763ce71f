//! Replays the checked-in fuzz corpus (`smpp/fuzz/corpus/<target>/`) through the same
//! entry points the cargo-fuzz targets call (`tongdao_smpp::fuzzing`), so
//! `cargo test --workspace` exercises every SMPP target on stable (issue 18 item 3:
//! SMPP PDU decoding of what peers send, receipt text parsing, long-MO re-assembly).

use tongdao_smpp::fuzzing;

/// The files of one target's corpus, sorted (at least 4).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let files = tongdao_link::corpus::read(env!("CARGO_MANIFEST_DIR"), target)
        .unwrap_or_else(|e| panic!("corpus {target}: {e}"));
    assert!(
        files.len() >= 4,
        "{target}: only {} corpus files",
        files.len()
    );
    files
}

/// Issue 18 item 3: every PDU of the corpus decodes to one frame with its header,
/// round-trips where the session reads it, and turns into a receipt or MO no longer
/// than its octets.
#[test]
fn decode_pdu_corpus_replays() {
    for data in corpus("decode_pdu") {
        fuzzing::decode_pdu(&data);
    }
}

/// Issue 18 item 3: framing consumes each PDU's `command_length`, whatever the chunks.
#[test]
fn codec_stream_corpus_replays() {
    for data in corpus("codec_stream") {
        fuzzing::codec_stream(&data);
    }
}

/// Issue 18 item 3: receipt text fields are pieces of the text and survive being
/// written back in the canonical order.
#[test]
fn receipt_text_corpus_replays() {
    for data in corpus("receipt_text") {
        fuzzing::receipt_text(&data);
    }
}

/// Issue 18 item 3: in-memory re-assembly never yields more characters than octets.
#[test]
fn reassembly_corpus_replays() {
    for data in corpus("reassembly") {
        fuzzing::reassembly(&data);
    }
}
