//! Replays the checked-in fuzz corpus (`sgip/fuzz/corpus/<target>/`) through the same
//! properties the cargo-fuzz targets check, so CI exercises every decoder on stable
//! (issue 16 tests: a fuzz target per decoder).

use tongdao_sgip::codec::{command, decode_body};
use tongdao_sgip::fuzzing;

/// The files of one target's corpus, sorted (never none).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let files = tongdao_link::corpus::read(env!("CARGO_MANIFEST_DIR"), target)
        .unwrap_or_else(|e| panic!("corpus {target}: {e}"));
    assert!(!files.is_empty(), "empty corpus for {target}");
    files
}

#[test]
fn every_body_decoder_survives_its_corpus_and_decodes_its_valid_seeds() {
    for (target, id) in [
        ("bind", command::BIND),
        ("submit", command::SUBMIT),
        ("deliver", command::DELIVER),
        ("report", command::REPORT),
    ] {
        let inputs = corpus(target);
        let decoded = inputs
            .iter()
            .filter(|data| decode_body(id, data).is_ok())
            .count();
        let refused = inputs.len() - decoded;
        assert!(
            decoded >= 1 && refused >= 1,
            "{target}: {decoded} decoded, {refused} refused"
        );
        for data in &inputs {
            fuzzing::body(id, data);
        }
    }
}

#[test]
fn response_decoders_survive_their_corpus() {
    for data in corpus("resp") {
        fuzzing::resp(&data);
    }
}

#[test]
fn framing_survives_its_corpus() {
    for data in corpus("framing") {
        fuzzing::stream(&data);
    }
}
