//! GitHub cuts PR comments at 65,536 characters. The Markdown plan must fit, and must never
//! cut the summary or the destroy section to get there.

use crate::support::fixtures::model;
use gantry::render::{GITHUB_COMMENT_LIMIT, markdown};
use gantry::state::{ServiceState, State};

fn big_config(services: usize) -> String {
    let mut s = String::from("[project]\nname = \"big\"\n");
    for i in 0..services {
        s.push_str(&format!(
            "[service.svc-{i:05}]\nimage = \"registry.example/svc:{i}\"\nreplicas = 2\nport = 8080\nenv = {{ A = \"{i}\", B = \"x\" }}\nhealth = {{ http = \"/healthz\" }}\n"
        ));
    }
    s
}

#[test]
fn markdown_fits_a_comment_and_keeps_every_destroy() {
    let desired = model(&big_config(3000));
    // The state has every desired service at an older image, plus 300 that are gone.
    let previous =
        model(&big_config(3300).replace("registry.example/svc:", "registry.example/svc:old-"));
    let mut state = State::empty("big", "lineage".into());
    for (name, spec) in previous.services {
        state.services.insert(
            name,
            ServiceState {
                spec,
                revision: 1,
                replicas: vec![],
                old_colour: None,
            },
        );
    }
    let plan = gantry::plan::plan(&desired, Some(&state), "x");
    assert_eq!(plan.summary.destroy, 300);
    assert_eq!(plan.summary.replace, 3000);

    let md = markdown(&plan, GITHUB_COMMENT_LIMIT);
    assert!(
        md.chars().count() <= GITHUB_COMMENT_LIMIT,
        "{} characters",
        md.chars().count()
    );
    assert!(md.contains("**Plan: 0 to create, 3000 to roll, 300 to destroy.**"));
    for i in 3000..3300 {
        assert!(
            md.contains(&format!("**`service.svc-{i:05}`**: destroy")),
            "destroy of svc-{i:05} was cut"
        );
    }
    assert!(md.contains("Cut to fit a 65536-character comment"));
}

#[test]
fn small_plans_are_not_cut() {
    let desired = model(&big_config(3));
    let md = markdown(
        &gantry::plan::plan(&desired, None, "x"),
        GITHUB_COMMENT_LIMIT,
    );
    assert!(!md.contains("Cut to fit"));
    assert_eq!(md.matches("<details>").count(), 3);
}
