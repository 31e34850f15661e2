//! Listing every instance of an app: its groups, then each group's pages, one quota gate per
//! request, with a bound on how many pages a garbled total can make us read.
//!
//! Built on the `operations` methods only; knows nothing of HTTP or envelopes.

use std::collections::HashSet;

use super::model::{AppInstances, InstancePage};
use super::{Credentials, Operation, SaeClient, SaeError};

/// Page size `list_all_instance_ids` asks for.
const INSTANCE_PAGE_SIZE: u32 = 50;
/// Most pages `list_all_instance_ids` reads per group (5,000 instances at 50 a page, far beyond
/// what an SAE app holds). A first page announcing more is refused rather than followed: each page
/// costs a request of the key's per-minute quota.
pub const MAX_INSTANCE_PAGES: u64 = 100;

impl SaeClient {
    /// Every instance id of the app: its groups, then every page of each group, without
    /// duplicates. That is 1 + (pages per group, summed) HTTP requests, and `gate` is awaited before
    /// each one, so the caller can take one quota token per request. A gate that refuses (`Err`)
    /// stops the listing there, nothing more is sent, and its error is the outer one; the inner
    /// result is SAE's. [`no_gate`] lets every request go.
    ///
    /// A group is paged as far as its first page said (`TotalSize` over `PageSize`), never further,
    /// and a first page announcing more than [`MAX_INSTANCE_PAGES`] pages is an error rather than
    /// hundreds of requests: a garbled total must not spend the key's quota.
    pub async fn list_all_instance_ids<G, F, E>(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        gate: G,
    ) -> Result<Result<Vec<String>, SaeError>, E>
    where
        G: FnMut() -> F,
        F: Future<Output = Result<(), E>>,
    {
        Ok(self
            .list_all_instances(creds, region_id, app_id, gate)
            .await?
            .map(|all| all.ids))
    }

    /// Like [`Self::list_all_instance_ids`], with which instances are being terminated.
    pub async fn list_all_instances<G, F, E>(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        mut gate: G,
    ) -> Result<Result<AppInstances, SaeError>, E>
    where
        G: FnMut() -> F,
        F: Future<Output = Result<(), E>>,
    {
        gate().await?;
        let groups = match self
            .describe_application_groups(creds, region_id, app_id)
            .await
        {
            Ok(groups) => groups,
            Err(e) => return Ok(Err(e)),
        };
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        let mut terminating = Vec::new();
        let mut running = Vec::new();
        for group in groups {
            let mut pages: u64 = 1;
            let mut fetched: u64 = 0;
            let mut page_number: u32 = 1;
            loop {
                gate().await?;
                let page = self
                    .describe_application_instances(
                        creds,
                        region_id,
                        app_id,
                        &group.group_id,
                        page_number,
                        INSTANCE_PAGE_SIZE,
                    )
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => return Ok(Err(e)),
                };
                if page_number == 1 {
                    pages = match page_count(app_id, &group.group_id, &page) {
                        Ok(pages) => pages,
                        Err(e) => return Ok(Err(e)),
                    };
                }
                fetched += page.instance_ids.len() as u64;
                let empty = page.instance_ids.is_empty();
                terminating.extend(page.terminating);
                running.extend(page.running);
                for id in page.instance_ids {
                    // Instances that move between pages while we page would otherwise appear twice.
                    if seen.insert(id.clone()) {
                        ids.push(id);
                    }
                }
                if empty || fetched >= page.total || u64::from(page_number) >= pages {
                    break;
                }
                page_number += 1;
            }
        }
        terminating.sort();
        terminating.dedup();
        running.sort();
        running.dedup();
        // An instance seen Running on one page and Terminating on a later one is terminating.
        running.retain(|id| terminating.binary_search(id).is_err());
        Ok(Ok(AppInstances {
            ids,
            terminating,
            running,
        }))
    }
}

/// The gate of [`SaeClient::list_all_instance_ids`] for a caller without a quota: every request goes.
pub fn no_gate() -> std::future::Ready<Result<(), std::convert::Infallible>> {
    std::future::ready(Ok(()))
}

/// How many pages a group's first page announces, refused beyond [`MAX_INSTANCE_PAGES`].
pub(super) fn page_count(
    app_id: &str,
    group_id: &str,
    first: &InstancePage,
) -> Result<u64, SaeError> {
    // A page size of 0 would be a garbled answer; count by the size we asked for then.
    let page_size = match first.page_size {
        0 => INSTANCE_PAGE_SIZE,
        n => n,
    };
    let pages = first.total.div_ceil(u64::from(page_size)).max(1);
    if pages > MAX_INSTANCE_PAGES {
        return Err(SaeError::NoAnswer {
            operation: Operation::DescribeApplicationInstances.name(),
            detail: format!(
                "group {group_id} of app {app_id} announces TotalSize {} at PageSize {page_size}, \
                 that is {pages} pages; reading more than {MAX_INSTANCE_PAGES} pages per group is \
                 refused (each page is one request of the AccessKey's quota)",
                first.total
            ),
        });
    }
    Ok(pages)
}

#[cfg(test)]
mod tests;
