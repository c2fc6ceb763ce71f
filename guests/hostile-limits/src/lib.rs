//! Test fixture: a module that goes up to, and one past, three sandbox limits,
//! with the size of each attempt named by its input so a test can try the limit
//! itself and one more.
//!
//! * `bulletin` answers a keyed bulletin of N variants, N the number ending the
//!   push id (`push-64` gives 64 variants): `max_variants`.
//! * `on_mo` `kv N` stores a value of N bytes under the key `big` and answers
//!   `stored N` or `refused: <error>`: `max_kv_value_bytes` (`value-too-large`).
//! * `on_mo` `data N` makes N content-library calls and answers `data N done`;
//!   past `max_data_ops` the host ends the call.
//! * `on_mo` `get` answers the length of the value under `big`, or `none`.

use tongdao_sdk::{
    Bulletin, BulletinRequest, KeyedBulletin, KeyedText, Mo, Module, ModuleError, ModuleInfo,
    content, kv,
};

struct HostileLimits;

/// The number ending `text` (`push-64`, `kv 1025`).
fn trailing_number(text: &str) -> Result<usize, ModuleError> {
    let digits: String = text
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse()
        .map_err(|_| ModuleError::InvalidRequest(format!("no number at the end of `{text}`")))
}

impl Module for HostileLimits {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-limits".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: pushes the value-size, data-call and variant limits".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let n = trailing_number(&request.push_id)?;
        let variants = (0..n)
            .map(|i| KeyedText {
                key: format!("k{i}"),
                text: format!("variant {i}"),
            })
            .collect();
        Ok(Bulletin::Keyed(KeyedBulletin {
            attribute: "bucket".into(),
            variants,
            fallback: Some("fallback".into()),
        }))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let text = message.text.trim();
        if text == "get" {
            return Ok(Some(match kv::get("big")? {
                Some(value) => format!("big is {} bytes", value.len()),
                None => "none".into(),
            }));
        }
        let n = trailing_number(text)?;
        if text.starts_with("kv ") {
            return Ok(Some(match kv::set("big", &vec![b'v'; n]) {
                Ok(()) => format!("stored {n}"),
                Err(error) => format!("refused: {error:?}"),
            }));
        }
        if text.starts_with("data ") {
            for _ in 0..n {
                let _ = content::count("items");
            }
            return Ok(Some(format!("data {n} done")));
        }
        Err(ModuleError::InvalidRequest(format!("unknown command `{text}`")))
    }
}

tongdao_sdk::export_module!(HostileLimits);
