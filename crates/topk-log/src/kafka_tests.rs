use super::*;

#[test]
fn distances_count_messages() {
    let log_distance = |from, to| messages_below(to).saturating_sub(messages_below(from));
    let k = 7u64 << OFFSET_BITS;
    assert_eq!(log_distance(k + 3, 8 << OFFSET_BITS), 0, "message 7 consumed: caught up with end 8");
    assert_eq!(log_distance(k, 8 << OFFSET_BITS), 1, "at the start of message 7: one to go");
    assert_eq!(log_distance(0, 8 << OFFSET_BITS), 8);
}

#[test]
fn source_positions_round_trip_through_their_header() {
    let s = SourcePos { source: u64::MAX - 3, pos: 1 << 40, line: 12 };
    assert_eq!(decode_source(&encode_source(s)), Some(s));
    assert_eq!(decode_source(&[1, 2, 3]), None);
}
