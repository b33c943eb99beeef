//! The protobuf wire format, just enough to walk a message's top-level fields: `build.rs` splits
//! Envoy's descriptor set with it and indexes that set's files.

/// A varint at `at`, which moves past it.
pub(crate) fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A top-level field of a message: its number, the whole field's bytes, the payload of a length field.
pub(crate) type WireField<'a> = (u64, &'a [u8], Option<&'a [u8]>);

/// The top-level fields of a message.
pub(crate) fn fields(buf: &[u8]) -> Option<Vec<WireField<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at)?;
        let payload = match key & 7 {
            0 => {
                varint(buf, &mut at)?;
                None
            }
            1 => {
                at += 8;
                None
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).ok()?;
                let p = buf.get(at..at + len)?;
                at += len;
                Some(p)
            }
            5 => {
                at += 4;
                None
            }
            _ => return None,
        };
        out.push((key >> 3, buf.get(start..at)?, payload));
    }
    Some(out)
}

/// The payloads of the length-delimited field `number`.
pub(crate) fn entries(buf: &[u8], number: u64) -> Option<Vec<&[u8]>> {
    Some(
        fields(buf)?
            .into_iter()
            .filter(|(n, _, _)| *n == number)
            .filter_map(|(_, _, p)| p)
            .collect(),
    )
}
