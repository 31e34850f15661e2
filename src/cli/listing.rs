//! `kubectl sae get`: objects grouped by app, each with its place in the app's line.
//!
//! The place comes from the same rules the controller takes turns by ([`crate::decide`]'s
//! `holds_app`, `waits_in_line`, `queue_order`), over every object the plugin could read — also
//! those of namespaces it does not show, since they share the line.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::format_between;
use crate::crd::SaeInstanceDeletion;
use crate::decide::{holds_app, queue_order, waits_in_line};

/// One object as `get` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    /// `holds app` (an attempt in flight or its change order running), `1`, `2`, … (its turn
    /// among the objects waiting), `-` (finished), `dry run`, or `not in line` (waiting for
    /// credentials or held by a policy: such objects hold no place).
    pub place: String,
    pub phase: String,
    pub reason: String,
    pub change_order: String,
    pub attempts: i32,
    pub instances: usize,
    pub age: String,
}

/// The objects of one app, in the order they take turns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppGroup {
    pub region_id: String,
    pub app_id: String,
    pub objects: Vec<Row>,
}

/// Groups `all` by region and app (as their first attempts recorded them), computes each one's
/// place, and keeps the rows `show` selects (and, with `app`, only that app). Groups without a
/// row shown are left out.
pub fn group_by_app(
    all: &[SaeInstanceDeletion],
    show: impl Fn(&SaeInstanceDeletion) -> bool,
    app: Option<&str>,
    now: Timestamp,
) -> Vec<AppGroup> {
    let mut by_app: BTreeMap<(String, String), Vec<&SaeInstanceDeletion>> = BTreeMap::new();
    for obj in all {
        let pinned = obj.pinned();
        if app.is_some_and(|a| a != pinned.app_id) {
            continue;
        }
        by_app
            .entry((pinned.region_id.to_string(), pinned.app_id.to_string()))
            .or_default()
            .push(obj);
    }
    let mut groups = Vec::new();
    for ((region_id, app_id), mut objects) in by_app {
        objects.sort_by(|a, b| queue_order(a).cmp(&queue_order(b)));
        let mut turn = 0;
        let mut rows = Vec::new();
        for obj in objects {
            let place = place(obj, &mut turn);
            if show(obj) {
                rows.push(row(obj, place, now));
            }
        }
        if !rows.is_empty() {
            groups.push(AppGroup {
                region_id,
                app_id,
                objects: rows,
            });
        }
    }
    groups
}

/// `turn` counts the waiting objects already seen, in queue order.
fn place(obj: &SaeInstanceDeletion, turn: &mut usize) -> String {
    let status = obj.status.as_ref();
    if status.is_some_and(|s| s.is_terminal()) {
        return "-".into();
    }
    if obj.pinned().dry_run {
        return "dry run".into();
    }
    if holds_app(obj) {
        return "holds app".into();
    }
    if waits_in_line(obj) {
        *turn += 1;
        return turn.to_string();
    }
    "not in line".into()
}

fn row(obj: &SaeInstanceDeletion, place: String, now: Timestamp) -> Row {
    let s = obj.status.clone().unwrap_or_default();
    let dash = || "-".to_string();
    Row {
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        place,
        phase: s.phase.map_or_else(dash, |p| p.to_string()),
        reason: s.reason().map_or_else(dash, String::from),
        change_order: s.change_order_id.clone().unwrap_or_else(dash),
        attempts: s.attempts(),
        instances: obj.pinned().instance_ids.len(),
        age: obj
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(dash, |c| format_between(c.0, now)),
    }
}

/// The table `get` prints: one header line per app, then its objects. `wide` adds reason,
/// attempts and instance count; `namespaces` the namespace column (with `-A`).
pub fn render_table(groups: &[AppGroup], wide: bool, namespaces: bool) -> String {
    if groups.is_empty() {
        return "No SaeInstanceDeletion found.\n".into();
    }
    let mut header = vec![];
    if namespaces {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "PLACE", "PHASE", "CHANGEORDER", "AGE"]);
    if wide {
        header.extend(["REASON", "ATTEMPTS", "INSTANCES"]);
    }
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let mut app_lines = BTreeMap::new();
    for g in groups {
        app_lines.insert(table.len(), format!("APP {} ({})", g.app_id, g.region_id));
        for r in &g.objects {
            let mut cells = vec![];
            if namespaces {
                cells.push(r.namespace.clone());
            }
            cells.extend([
                r.name.clone(),
                r.place.clone(),
                r.phase.clone(),
                r.change_order.clone(),
                r.age.clone(),
            ]);
            if wide {
                cells.extend([
                    r.reason.clone(),
                    r.attempts.to_string(),
                    r.instances.to_string(),
                ]);
            }
            table.push(cells);
        }
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, cells) in table.iter().enumerate() {
        if let Some(app) = app_lines.get(&i) {
            if i > 1 {
                out.push('\n');
            }
            out.push_str(app);
            out.push('\n');
        }
        let indent = if i == 0 { "" } else { "  " };
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(&format!("{indent}{}\n", line.join("   ").trim_end()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_objects::{at, fresh, with_status};
    use crate::crd::{Phase, Reason};

    fn on_app(mut o: SaeInstanceDeletion, app: &str) -> SaeInstanceDeletion {
        o.spec.app_id = app.into();
        o
    }

    #[test]
    fn groups_by_app_with_places_in_line() {
        let running = with_status(
            fresh("running", 0),
            Phase::InProgress,
            Reason::WaitingForChangeOrder,
            "",
            |s| s.change_order_id = Some("co-1".into()),
        );
        let first = with_status(
            fresh("first", 1),
            Phase::Pending,
            Reason::WaitingForApplication,
            "",
            |_| {},
        );
        let second = fresh("second", 2);
        let done = with_status(
            fresh("done", -60),
            Phase::Succeeded,
            Reason::Succeeded,
            "",
            |_| {},
        );
        let no_key = with_status(
            fresh("no-key", 0),
            Phase::Pending,
            Reason::CredentialsNotFound,
            "",
            |_| {},
        );
        let other_app = on_app(fresh("other", 5), "app-2");
        let mut dry = on_app(fresh("dry", 0), "app-2");
        dry.spec.dry_run = true;
        let all = vec![second, other_app, running, done, first, no_key, dry];
        let groups = group_by_app(&all, |_| true, None, at(65));
        let places: Vec<(String, Vec<(String, String)>)> = groups
            .iter()
            .map(|g| {
                (
                    g.app_id.clone(),
                    g.objects
                        .iter()
                        .map(|r| (r.name.clone(), r.place.clone()))
                        .collect(),
                )
            })
            .collect();
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            places,
            vec![
                (
                    "app-1".into(),
                    pairs(&[
                        ("done", "-"),
                        ("no-key", "not in line"),
                        ("running", "holds app"),
                        ("first", "1"),
                        ("second", "2")
                    ])
                ),
                ("app-2".into(), pairs(&[("dry", "dry run"), ("other", "1")])),
            ]
        );
        assert_eq!(groups[0].objects[2].change_order, "co-1");
        assert_eq!(groups[0].objects[0].age, "2m05s");

        // Filtering by app, or showing only some objects, keeps the places computed over all.
        let only_second = group_by_app(
            &all,
            |o| o.metadata.name.as_deref() == Some("second"),
            Some("app-1"),
            at(65),
        );
        assert_eq!(only_second.len(), 1);
        assert_eq!(only_second[0].objects[0].place, "2");
    }

    #[test]
    fn renders_a_table_per_app() {
        let all = vec![fresh("a", 0), on_app(fresh("b", 0), "app-2")];
        let groups = group_by_app(&all, |_| true, None, at(3));
        let table = render_table(&groups, false, false);
        assert_eq!(
            table,
            "NAME   PLACE   PHASE   CHANGEORDER   AGE\n\
             APP app-1 (cn-hangzhou)\n  a      1       -       -             3s\n\n\
             APP app-2 (cn-hangzhou)\n  b      1       -       -             3s\n"
        );
        let wide = render_table(&groups, true, true);
        assert!(wide.starts_with("NAMESPACE   NAME   PLACE   PHASE   CHANGEORDER   AGE   REASON   ATTEMPTS   INSTANCES\n"), "{wide}");
        assert_eq!(
            render_table(&[], false, false),
            "No SaeInstanceDeletion found.\n"
        );
    }
}
