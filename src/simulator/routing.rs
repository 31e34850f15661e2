//! Which operation a request is ([`route`] over [`Operation::ALL`]), and its query parameters
//! ([`Params`]) with the checks every operation shares (required, numbers, pages).
//!
//! Depends on `api_error` and `crate::sae::Operation` only; no model state.

use super::api_error::{ApiError, not_empty, with_message};

/// The largest page a paged operation accepts.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The SAE operations the simulator serves: the controller's own list, so both spell each
/// operation's name, method and path the same way.
pub use crate::sae::Operation;

/// The operation at `method` + `path`; an unknown pair is `InvalidApi.NotFound` (404), as a
/// gateway answers an API it cannot route.
pub fn route(method: &str, path: &str) -> Result<Operation, ApiError> {
    match Operation::ALL.into_iter().find(|op| op.path() == path) {
        Some(op) if op.method() == method => Ok(op),
        Some(op) => Err(ApiError::gateway(
            "InvalidApi.NotFound",
            format!(
                "{} is served with {}, not {method}.",
                op.path(),
                op.method()
            ),
        )),
        None => Err(ApiError::gateway(
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )),
    }
}

/// Query parameters, first occurrence wins; a blank value counts as absent.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a>(pub &'a [(String, String)]);

impl<'a> Params<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn required(&self, name: &str) -> Result<&'a str, ApiError> {
        self.get(name).ok_or_else(|| not_empty(name))
    }

    pub(super) fn number(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(with_message(format!(
                    "The parameter {name} must be an integer from 1 to {max}, got {raw:?}."
                ))),
            },
        }
    }

    pub(super) fn page(&self) -> Result<(u32, u32), ApiError> {
        Ok((
            self.number("CurrentPage", 1, u32::MAX)?,
            self.number("PageSize", 10, MAX_PAGE_SIZE)?,
        ))
    }
}
