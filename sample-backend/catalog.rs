//! The fixed item catalog behind `GET /api/items` and `GET /api/items/{id}`.
//!
//! The read endpoints exist so probes have something cheap and realistic to read. Every
//! document is encoded once at startup; a request only clones a reference-counted `Bytes`, so
//! these routes measure the HTTP path and nothing else.

use bytes::Bytes;
use serde::Serialize;

/// One catalog entry as clients see it.
#[derive(Debug, Serialize)]
struct Item {
    id: u32,
    name: &'static str,
    /// In the shop's currency; a decimal number in JSON.
    price: f64,
}

/// Ship's-chandlery stock, in keeping with the project's name.
const STOCK: [(&str, f64); 20] = [
    ("Brass porthole", 189.0),
    ("Hemp rope, 10 m", 24.5),
    ("Deck mop", 12.99),
    ("Ship's bell", 95.0),
    ("Signal flag set", 64.75),
    ("Foul-weather jacket", 149.0),
    ("Marine compass", 79.9),
    ("Fender, large", 32.0),
    ("Bilge pump", 58.25),
    ("Cleat, stainless", 8.4),
    ("Anchor chain, 5 m", 110.0),
    ("Lifebuoy", 45.5),
    ("Oilskin hat", 19.95),
    ("Sextant", 320.0),
    ("Tide table", 6.5),
    ("Boat hook", 27.3),
    ("Storm lantern", 38.0),
    ("Caulking iron", 14.2),
    ("Sea chart, coastal", 22.0),
    ("Load line gauge", 72.8),
];

/// The encoded catalog: the whole list and each item on its own.
#[derive(Debug)]
pub struct Catalog {
    list: Bytes,
    items: Vec<Bytes>,
}

impl Catalog {
    /// Encodes every document once.
    pub fn build() -> Self {
        let items: Vec<Item> = STOCK
            .iter()
            .zip(1u32..)
            .map(|(&(name, price), id)| Item { id, name, price })
            .collect();
        // Plain structs of strings and numbers always serialize; the fallbacks keep this free
        // of panics anyway.
        let list =
            serde_json::to_vec(&items).map_or_else(|_| Bytes::from_static(b"[]"), Bytes::from);
        let items = items
            .iter()
            .map(|item| {
                serde_json::to_vec(item).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
            })
            .collect();
        Self { list, items }
    }

    /// `GET /api/items`: the whole list as a JSON array.
    pub fn list(&self) -> Bytes {
        self.list.clone()
    }

    /// `GET /api/items/{id}`: one item, if `id` (the raw path segment) names one.
    pub fn item(&self, id: &str) -> Option<Bytes> {
        let id: usize = id.parse().ok()?;
        self.items.get(id.checked_sub(1)?).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_items_agree() {
        let catalog = Catalog::build();
        let list: serde_json::Value = serde_json::from_slice(&catalog.list()).expect("valid JSON");
        assert_eq!(list.as_array().map(Vec::len), Some(20));
        let third: serde_json::Value =
            serde_json::from_slice(&catalog.item("3").expect("item 3 exists")).expect("valid JSON");
        assert_eq!(list[2], third);
        assert_eq!(third["id"], 3);
    }

    #[test]
    fn unknown_ids_are_none() {
        let catalog = Catalog::build();
        for id in ["0", "21", "-1", "abc", "", "99999999999999999999999"] {
            assert!(catalog.item(id).is_none(), "{id:?}");
        }
    }
}
