//! The stored form of a run's latency histogram: HDR's V2 format, deflated (a few hundred
//! bytes to a few kB per run), so percentiles over many runs can be recomputed exactly by
//! merging them.

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// A histogram that could not be encoded, decoded or merged.
#[derive(Debug, thiserror::Error)]
#[error("latency histogram: {0}")]
pub struct HistogramError(String);

/// Encodes a histogram for [`RunRecord::histogram`](super::RunRecord::histogram).
pub fn encode(h: &Histogram<u64>) -> Result<Vec<u8>, HistogramError> {
    let mut out = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    Ok(out)
}

/// Decodes one stored histogram.
pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>, HistogramError> {
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| HistogramError(format!("{e:?}")))
}

/// Merges stored histograms into one (`None` when there are none).
pub fn merge<'a>(
    stored: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<Histogram<u64>>, HistogramError> {
    let mut merged: Option<Histogram<u64>> = None;
    for bytes in stored {
        let h = decode(bytes)?;
        match &mut merged {
            None => merged = Some(h),
            Some(m) => m.add(&h).map_err(|e| HistogramError(format!("{e:?}")))?,
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_merge() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut b = a.clone();
        for v in 1..=1000 {
            a.record(v * 10).unwrap();
            b.record(v * 20).unwrap();
        }
        let (ea, eb) = (encode(&a).unwrap(), encode(&b).unwrap());
        assert_eq!(decode(&ea).unwrap(), a);
        let m = merge([ea.as_slice(), eb.as_slice()]).unwrap().unwrap();
        assert_eq!(m.len(), 2000);
        assert_eq!(m.max(), b.max());
        assert!(merge(std::iter::empty()).unwrap().is_none());
        assert!(decode(b"not a histogram").is_err());
    }
}
