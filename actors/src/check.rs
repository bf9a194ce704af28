//! `sluice check DIR`: load a folder of manifests, print the compiled routes and every
//! diagnostic.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use sluice::model::{HostMatch, Route};
use sluice::routing::RoutingTable;
use sluice::source::manifests::{Loaded, load_dir};
use sluice::translate::{Options, Translation, translate};

/// Runs the check and prints the report to stdout. Exit code 1 when any file failed to parse
/// or any diagnostic is an error, 2 when the folder cannot be read at all.
pub fn run(dir: &Path, options: &Options) -> ExitCode {
    if !dir.is_dir() {
        eprintln!(
            "sluice check: {} is not a folder; pass the folder that holds your manifests",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let loaded = load_dir(dir);
    let translation = translate(&loaded.state, options);
    let table = RoutingTable::compile(&translation.model);
    print!("{}", report(dir, &loaded, &translation, &table));
    if loaded.errors.is_empty() && !translation.has_errors() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Renders the report: a summary line, the route table, TLS hosts, then diagnostics.
pub fn report(
    dir: &Path,
    loaded: &Loaded,
    translation: &Translation,
    table: &RoutingTable,
) -> String {
    let mut out = String::new();
    let model = &translation.model;
    let _ = writeln!(
        out,
        "{}: {} file(s), {} object(s) ({} of other kinds ignored), {} Ingress(es) of ours",
        dir.display(),
        loaded.files,
        loaded.state.len(),
        loaded.ignored,
        model.ingresses.len()
    );

    let mut routes: Vec<&Route> = table.routes().iter().collect();
    routes.sort_by(|a, b| {
        tier(&a.host)
            .cmp(&tier(&b.host))
            .then_with(|| a.host.cmp(&b.host))
            .then_with(|| b.path.path.len().cmp(&a.path.path.len()))
            .then_with(|| a.path.kind.cmp(&b.path.kind))
    });
    let mut rows: Vec<[String; 6]> = routes
        .iter()
        .map(|r| {
            [
                r.host.to_string(),
                r.path.path.clone(),
                r.path.kind.to_string(),
                r.source.ingress.to_string(),
                r.backend.label(),
                endpoints(&r.backend.endpoints),
            ]
        })
        .collect();
    if let Some(b) = table.default_backend() {
        rows.push([
            "(default backend)".into(),
            "-".into(),
            "-".into(),
            b.ingress.to_string(),
            b.label(),
            endpoints(&b.endpoints),
        ]);
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("No routes: no Ingress of ours has a valid rule (every request gets 404).\n");
    } else {
        table_out(
            &mut out,
            ["HOST", "PATH", "TYPE", "INGRESS", "BACKEND", "ENDPOINTS"],
            &rows,
        );
    }

    if !model.tls.is_empty() {
        out.push('\n');
        let rows: Vec<[String; 3]> = model
            .tls
            .iter()
            .map(|t| {
                [
                    t.host.to_string(),
                    t.secret.to_string(),
                    t.ingress.to_string(),
                ]
            })
            .collect();
        table_out(&mut out, ["TLS HOST", "SECRET", "INGRESS"], &rows);
    }

    let errors = loaded.errors.len()
        + translation
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count();
    let warnings = translation.diagnostics.len() + loaded.errors.len() - errors;
    out.push('\n');
    for e in &loaded.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for d in &translation.diagnostics {
        let _ = writeln!(out, "{}: {} [{}]", d.severity.as_str(), d, d.reason);
    }
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}

fn tier(h: &HostMatch) -> u8 {
    match h {
        HostMatch::Exact(_) => 0,
        HostMatch::Wildcard(_) => 1,
        HostMatch::Any => 2,
    }
}

fn endpoints(eps: &[sluice::model::Endpoint]) -> String {
    if eps.is_empty() {
        return "none (503)".to_string();
    }
    let list: Vec<String> = eps
        .iter()
        .map(|e| {
            if e.ready {
                e.addr.to_string()
            } else {
                format!("{} (terminating)", e.addr)
            }
        })
        .collect();
    list.join(", ")
}

fn table_out<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut String, cells: [&str; N]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, header);
    for row in rows {
        line(out, std::array::from_fn(|i| row[i].as_str()));
    }
}
