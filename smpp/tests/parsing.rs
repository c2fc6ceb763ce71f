//! Receipt parsing of quirky texts and message-id normalisation, through the public API.

use tongdao_smpp::receipt::{build_receipt, parse_receipt_text};
use tongdao_smpp::{ReceiptState, normalize_message_id};

#[test]
fn quirky_receipt_texts() {
    // Upper case keys, doubled spaces, space before the colon.
    let p = parse_receipt_text(
        "ID:12345  SUB:001 DLVRD:001 SUBMIT DATE:2401011200  DONE DATE : 2401011205 STAT:delivrd ERR:000 TEXT:Hi",
    )
    .expect("parse");
    assert_eq!(p.id.as_deref(), Some("12345"));
    assert_eq!(p.done_date.as_deref(), Some("2401011205"));
    assert_eq!(p.stat.as_deref(), Some("delivrd"));
    assert_eq!(p.text.as_deref(), Some("Hi"));

    // Missing fields, other order, underscore dates, seconds in dates.
    let p =
        parse_receipt_text("stat:UNDELIV id:ab-99 done_date:240101120059 err:34").expect("parse");
    assert_eq!(p.id.as_deref(), Some("ab-99"));
    assert_eq!(p.stat.as_deref(), Some("UNDELIV"));
    assert_eq!(p.err.as_deref(), Some("34"));
    assert_eq!(p.done_date.as_deref(), Some("240101120059"));
    assert_eq!(p.sub, None);

    // Key-like words inside text: belong to the text.
    let p = parse_receipt_text("id:7 stat:EXPIRED text:stat:DELIVRD id:9").expect("parse");
    assert_eq!(p.id.as_deref(), Some("7"));
    assert_eq!(p.stat.as_deref(), Some("EXPIRED"));
    assert_eq!(p.text.as_deref(), Some("stat:DELIVRD id:9"));

    // Not a receipt.
    assert!(parse_receipt_text("hello world").is_none());
    // "did" is not "id".
    assert!(parse_receipt_text("did:5 xstat:1").is_none());

    for (stat, state) in [
        ("DELIVRD", ReceiptState::Delivered),
        ("expired", ReceiptState::Expired),
        ("DELETED", ReceiptState::Deleted),
        ("UNDELIV", ReceiptState::Undeliverable),
        ("ACCEPTD", ReceiptState::Accepted),
        ("UNKNOWN", ReceiptState::Unknown),
        ("REJECTD", ReceiptState::Rejected),
        ("ENROUTE", ReceiptState::Enroute),
        ("whatever", ReceiptState::Unknown),
    ] {
        assert_eq!(ReceiptState::from_stat(stat), state, "{stat}");
    }
}

#[test]
fn tlvs_win_over_text() {
    let r = build_receipt(
        "id:00FF stat:DELIVRD err:000",
        Some("255"),
        Some(5),
        None,
        "8613800138000",
        "10661234",
    )
    .expect("receipt");
    assert_eq!(r.message_id, "255");
    assert_eq!(r.state, ReceiptState::Undeliverable);
    assert_eq!(r.error_code.as_deref(), Some("000"));

    // TLVs only, empty text: network_error_code becomes the error code.
    let r = build_receipt("", Some("A1"), Some(3), Some(27), "1", "2").expect("receipt");
    assert_eq!(
        (r.message_id.as_str(), r.state),
        ("A1", ReceiptState::Expired)
    );
    assert_eq!(r.error_code.as_deref(), Some("027"));
    assert!(!ReceiptState::Enroute.is_final() && ReceiptState::Expired.is_final());

    assert!(build_receipt("no receipt here", None, None, None, "1", "2").is_none());
}

/// Does a receipt id find a submit id the way the relay is told to look it up?
fn matches(submit_id: &str, receipt_id: &str) -> bool {
    let key = &normalize_message_id(submit_id)[0];
    normalize_message_id(receipt_id).iter().any(|c| c == key)
}

#[test]
fn hex_decimal_id_normalisation() {
    assert_eq!(normalize_message_id("1A2B"), vec!["1a2b", "6699"]);
    assert!(matches("1A2B", "6699")); // hex in resp, decimal in receipt
    assert!(matches("6699", "1a2b")); // decimal in resp, hex in receipt
    assert!(matches("0001A2B", "6699")); // leading zeros
    assert!(matches("000000006699", "6699"));
    assert!(matches(" AbC ", "abc")); // case and spaces
    assert!(matches("F4240", "1000000"));
    assert!(!matches("1A2B", "6698"));
    // Non-hex ids compare exactly (lowercased).
    assert_eq!(normalize_message_id("msg-0001"), vec!["msg-0001"]);
    assert!(!matches("msg-0001", "msg-1"));
    assert_eq!(normalize_message_id("0000")[0], "0");
    // Beyond u128: no cross-base candidate, no panic.
    let long = "f".repeat(40);
    assert_eq!(normalize_message_id(&long), vec![long.clone()]);
}
