//! The pull-request view: a summary line, the risky changes (never collapsed, never cut),
//! a table with one row per resource, then collapsible details, the whole kept under
//! GitHub's comment limit by dropping details (then table rows) from the end, never the
//! summary or the risky section.

use std::fmt::Write as _;

use super::headline;
use super::text::text_details;
use crate::plan::Plan;

/// GitHub cuts comments longer than this many characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the plan as Markdown of at most `limit` characters (unless the summary and the
/// risky section alone are longer: those are never cut).
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "### gantry plan for {}", code(&plan.project));
    let _ = writeln!(head);
    let _ = writeln!(head, "**{}**", plan.summary.line());
    let _ = writeln!(head);
    match &plan.prior.lineage {
        Some(l) => {
            let _ = writeln!(
                head,
                "Against state serial {} of lineage {}, revision {}.",
                plan.prior.serial,
                code(l),
                plan.prior.revision
            );
        }
        None => {
            let _ = writeln!(head, "No state yet: everything is new.");
        }
    }
    if !plan.drift.is_empty() {
        // Drift in its own collapsed section: reviewers open it when they care.
        let _ = writeln!(head);
        let _ = writeln!(
            head,
            "<details><summary>Drift found by <code>--refresh</code> ({}): the engines differ from the recorded state</summary>",
            plan.drift.len()
        );
        let _ = writeln!(head);
        for d in &plan.drift {
            let _ = writeln!(
                head,
                "- {} on {}: {}",
                code(&d.container),
                code(&d.host),
                cell(&d.detail)
            );
        }
        let _ = writeln!(head);
        let _ = writeln!(head, "</details>");
    }
    let review = plan.review_order();
    let risky: Vec<_> = review.iter().filter(|c| c.is_risky()).collect();
    if !risky.is_empty() {
        let _ = writeln!(head);
        let _ = writeln!(head, "#### :warning: Risky changes ({})", risky.len());
        let _ = writeln!(head);
        for c in &risky {
            let reasons: Vec<&str> = c.risks.iter().map(|r| r.describe()).collect();
            let _ = writeln!(
                head,
                "- {} **{}**: {} ({})",
                code(c.action.symbol()),
                code(&c.address.to_string()),
                cell(&headline(c)),
                reasons.join(", ")
            );
        }
    }
    if review.is_empty() {
        return head;
    }

    let mut out = head;
    let footer_reserve = 400;
    let budget = limit.saturating_sub(footer_reserve);
    let _ = writeln!(out);
    let _ = writeln!(out, "| | Resource | Action |");
    let _ = writeln!(out, "|:-:|---|---|");
    let mut rows_cut = 0;
    for (i, c) in review.iter().enumerate() {
        let row = format!(
            "| {} | {} | {} |\n",
            code(c.action.symbol()),
            code(&c.address.to_string()),
            cell(&headline(c))
        );
        if out.len() + row.len() > budget {
            rows_cut = review.len() - i;
            break;
        }
        out.push_str(&row);
    }
    if rows_cut > 0 {
        let _ = writeln!(out, "| | … | {rows_cut} more not shown |");
    }

    let mut details_cut = 0;
    if rows_cut == 0 {
        let _ = writeln!(out);
        for (i, c) in review.iter().enumerate() {
            let mut block = String::new();
            let _ = writeln!(
                block,
                "<details><summary>{} <code>{}</code>: {}</summary>",
                c.action.symbol(),
                c.address,
                cell(&headline(c))
            );
            let _ = writeln!(block);
            let _ = writeln!(block, "```diff");
            for line in text_details(c).lines() {
                block.push_str(&diff_line(line));
                block.push('\n');
            }
            let _ = writeln!(block, "```");
            let _ = writeln!(block);
            let _ = writeln!(block, "</details>");
            if out.len() + block.len() > budget {
                details_cut = review.len() - i;
                break;
            }
            out.push_str(&block);
        }
    } else {
        details_cut = review.len();
    }
    if details_cut > 0 {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "_Cut to fit a {limit}-character comment: the details of {details_cut} resource(s) are not shown. The summary and every risky change above are complete; run `gantry plan` or see the JSON plan for the rest._"
        );
    }
    out
}

/// Moves a change sign to the first column so that GitHub colours the `diff` block
/// (`~` becomes `!`, which GitHub shows as a change).
fn diff_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = " ".repeat(line.len() - trimmed.len());
    for (prefix, sign) in [("-/+ ", '!'), ("+ ", '+'), ("- ", '-'), ("~ ", '!')] {
        if let Some(rest) = trimmed.strip_prefix(prefix) {
            return format!("{sign}{indent} {rest}");
        }
    }
    line.to_string()
}
