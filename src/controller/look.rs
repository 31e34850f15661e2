//! The look at an app that resolves a lost answer: its recent change orders (newest first, as far
//! back as the attempt) and its instances, turned into [`Evidence`] for `decide`. One look serves
//! every object resolving on the same app within a moment (after a restart, say), and change
//! orders other objects own are taken out before `decide` sees them.
//!
//! Also the zone SAE writes change-order times in, as far as anyone has learned it. Reads the
//! cache and calls SAE (through [`super::sae_calls`]); writes nothing to the API server.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;

use super::slot::Slot;
use super::{Context, Error};
use crate::crd::SaeInstanceDeletion;
use crate::decide::{Evidence, FoundChangeOrder, SaeClock, list_covers};
use crate::quota::Priority;
use crate::sae::time::{CreateTimeZone, SaeTime, parse_sae_time};
use crate::sae::{AppInstances, Credentials, SaeError};

/// (region, app, AccessKey ID): a look made with one key is not shown to another.
pub(super) type LookKey = (String, String, String);

/// What one look at an app for lost attempts saw.
#[derive(Clone)]
pub(super) struct Look {
    taken: Instant,
    /// When the look began, by the wall clock: what it shows is SAE's state from then on.
    began: Timestamp,
    /// How far back the change-order list was read.
    since: Timestamp,
    /// Rows that may be deletions, before anyone's claims are taken out.
    change_orders: Vec<FoundChangeOrder>,
    complete: bool,
    instances: AppInstances,
}

/// Apps remembered as listing zone-less times, at most (they come from specs: bounded whatever
/// they say).
const MAX_ZONELESS_APPS: usize = 4096;

/// A look this recent serves another object of the same app.
const LOOK_SHARED_FOR: Duration = Duration::from_secs(2);

/// Pages of ListChangeOrders one look at a lost attempt may read (50 rows each).
const MAX_CHANGE_ORDER_PAGES: u32 = 10;
const CHANGE_ORDER_PAGE_SIZE: u32 = 50;

impl Context {
    /// What is known of the zone of SAE's change-order times in `region`: the operator's word,
    /// else what this object or any other learned (the most recent attempt's, live objects
    /// first), else unknown.
    pub(super) fn zone_for(&self, obj: &SaeInstanceDeletion) -> CreateTimeZone {
        if let Some(offset) = self.settings.create_time_offset {
            return CreateTimeZone::Offset(offset);
        }
        let region = obj.pinned().region_id;
        let learned = |o: &SaeInstanceDeletion| {
            let status = o.status.as_ref()?;
            let zone = status.create_time_zone.as_deref()?;
            Some((
                status.last_attempt_time.as_ref().map(|t| t.0),
                zone.to_string(),
            ))
        };
        let cached = self.store.state();
        let live = std::iter::once(obj)
            .chain(cached.iter().map(|o| &**o))
            .filter(|o| o.pinned().region_id == region)
            .filter_map(learned)
            .max()
            .map(|(_, zone)| zone);
        live.or_else(|| self.finished.zone(region))
            .map_or(CreateTimeZone::Unknown, |z| CreateTimeZone::from_status(&z))
    }

    /// What is known of SAE's clock in `obj`'s region: its offset (measured by the SAE client
    /// from the `Date` of SAE's answers; zero until measured, which the decisions' window allows
    /// for), the zone of its times, and whether the last look at the app could not place them.
    pub(super) fn sae_clock(&self, obj: &SaeInstanceDeletion) -> SaeClock {
        let pinned = obj.pinned();
        let key = (pinned.region_id.to_string(), pinned.app_id.to_string());
        SaeClock {
            offset: self.sae.clock_offset(pinned.region_id).unwrap_or_default(),
            zone: self.zone_for(obj),
            zoneless_times: self.zoneless().contains(&key),
        }
    }

    fn zoneless(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.zoneless_apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What SAE shows about a lost attempt: the app's change orders that may be deletions, back to
    /// `since`, that no other object has claimed, and the instances the app still has. One look
    /// at an app serves every object resolving there within [`LOOK_SHARED_FOR`].
    pub(super) async fn evidence(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
    ) -> Result<Result<Evidence, SaeError>, Error> {
        let key = (
            obj.pinned().region_id.to_string(),
            obj.pinned().app_id.to_string(),
            creds.access_key_id().to_string(),
        );
        let shared = {
            let mut looks = self.looks.lock().unwrap_or_else(|e| e.into_inner());
            looks.retain(|_, look| {
                look.try_lock().map_or(true, |l| {
                    l.as_ref()
                        .is_some_and(|l| l.taken.elapsed() < LOOK_SHARED_FOR)
                })
            });
            looks.entry(key).or_default().clone()
        };
        // Waiting here means another object of the app is looking right now: its look serves us.
        let mut last = slot.released(shared.lock()).await;
        let zone = self.zone_for(obj);
        let fresh = last
            .as_ref()
            .filter(|l| l.taken.elapsed() < LOOK_SHARED_FOR && l.since <= since)
            .cloned();
        let look = match fresh {
            Some(look) => look,
            None => match self.look(slot, creds, obj, since, zone).await? {
                Ok(look) => {
                    *last = Some(look.clone());
                    look
                }
                Err(err) => return Ok(Err(err)),
            },
        };
        drop(last);
        let mut claimed: HashSet<String> = self
            .store
            .state()
            .iter()
            .filter(|o| o.uid() != obj.uid())
            .filter_map(|o| o.status.as_ref()?.change_order_id.clone())
            .collect();
        claimed.extend(self.finished.change_order_ids());
        let change_orders: Vec<FoundChangeOrder> = look
            .change_orders
            .into_iter()
            .filter(|co| !claimed.contains(&co.change_order_id))
            .collect();
        // Times that name their zone (ISO 8601 with an offset, epoch numbers) need no learning.
        let zone_learned = if change_orders
            .iter()
            .any(|co| matches!(co.created, Some(SaeTime::Absolute(_))))
        {
            CreateTimeZone::Named
        } else {
            CreateTimeZone::Unknown
        };
        let zone = if zone.is_known() { zone } else { zone_learned };
        // Rows that could be this object's, with times that carry no zone while none is known:
        // the decision cannot place them, and no look at this app can until the zone is learned.
        let key = (
            obj.pinned().region_id.to_string(),
            obj.pinned().app_id.to_string(),
        );
        let unplaceable = !zone.is_known()
            && change_orders
                .iter()
                .any(|co| matches!(co.created, Some(SaeTime::Civil(_))));
        let mut zoneless = self.zoneless();
        if !unplaceable {
            zoneless.remove(&key);
        } else if zoneless.len() < MAX_ZONELESS_APPS {
            zoneless.insert(key);
        }
        drop(zoneless);
        Ok(Ok(Evidence {
            change_orders,
            complete: look.complete,
            looked_at: look.began,
            since: look.since,
            zone_learned,
            existing_instance_ids: look.instances.ids,
            terminating_instance_ids: look.instances.terminating,
            zone,
        }))
    }

    /// One look at an app: ListChangeOrders (newest first) until a row is surely older than
    /// `since`, at most [`MAX_CHANGE_ORDER_PAGES`] pages, then its instances. A token per request.
    async fn look(
        &self,
        slot: &mut Slot,
        creds: &Credentials,
        obj: &SaeInstanceDeletion,
        since: Timestamp,
        zone: CreateTimeZone,
    ) -> Result<Result<Look, SaeError>, Error> {
        let (region, app) = (obj.pinned().region_id, obj.pinned().app_id);
        let began = Timestamp::now();
        let mut change_orders = vec![];
        // Every row in SAE's order, other types and others' included: what the list covers.
        let mut listed = vec![];
        let mut complete = false;
        // While the zone is unknown, zone-less rows cannot be placed: reading further back than
        // the newest page would only spend quota (a short list read to its end is complete anyway).
        let pages = if zone.is_known() {
            MAX_CHANGE_ORDER_PAGES
        } else {
            1
        };
        for page_number in 1..=pages {
            let page = self
                .take_token_and_call(
                    slot,
                    creds,
                    Priority::Resolve,
                    self.sae.list_change_orders(
                        creds,
                        region,
                        app,
                        Some("CoDeleteInstances"),
                        page_number,
                        CHANGE_ORDER_PAGE_SIZE,
                    ),
                )
                .await?;
            let page = match page {
                Ok(page) => page,
                Err(err) => return Ok(Err(err)),
            };
            let rows = page.change_orders.len();
            for co in page.change_orders {
                let found = FoundChangeOrder {
                    created: co.create_time.as_deref().and_then(parse_sae_time),
                    finished: co.finish_time.as_deref().and_then(parse_sae_time),
                    typed: co.co_type_code.is_some(),
                    change_order_id: co.change_order_id,
                    status: co.status,
                };
                listed.push(found.clone());
                // Rows of another type are not deletions; rows without a type may be.
                if co
                    .co_type_code
                    .as_deref()
                    .is_none_or(|t| t == "CoDeleteInstances")
                {
                    change_orders.push(found);
                }
            }
            // Rows received, not pages times the size asked for: SAE may serve smaller pages.
            let seen = listed.len() as u64;
            if list_covers(&listed, since, zone) || rows == 0 || seen >= page.total {
                complete = true;
                break;
            }
        }
        let instances = match self
            .instances(slot, creds, Priority::Resolve, region, app)
            .await?
        {
            Ok(instances) => instances,
            Err(err) => return Ok(Err(err)),
        };
        Ok(Ok(Look {
            taken: Instant::now(),
            began,
            since,
            change_orders,
            complete,
            instances,
        }))
    }
}
