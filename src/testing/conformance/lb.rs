//! The load balancer's contract, as the executor relies on it: `set_members` makes exactly
//! the given members the ones in rotation (joining and leaving in one change); a member
//! that left is out of rotation at once and `finish_drain` then lets it go for good; a member
//! that left can join again; no members is a valid state.
//!
//! What is "in rotation" is for the caller to observe: for a real load balancer, requests
//! through it answered by self-naming backends; for the fake, its record.

use std::future::Future;
use std::time::Duration;

use super::eventually;
use crate::ports::{LoadBalancer, Member};

fn member(address: &str, replica: u32) -> Member {
    Member {
        address: address.to_string(),
        service: "web".to_string(),
        replica,
        host: String::new(),
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `a` and `b`: two backend addresses; `in_rotation`: the addresses that take new requests
/// now, sorted.
pub async fn load_balancer<F, Fut>(lb: &dyn LoadBalancer, a: &str, b: &str, in_rotation: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let within = Duration::from_secs(5);
    let (ma, mb) = (member(a, 1), member(b, 2));
    let both = sorted(vec![a.to_string(), b.to_string()]);

    lb.set_members(&[], &[ma.clone(), mb.clone()])
        .await
        .expect("two members join");
    let seen = eventually(&both, within, &in_rotation).await;
    assert_eq!(seen, both, "after set_members([a, b])");

    lb.set_members(&[ma.clone(), mb.clone()], std::slice::from_ref(&mb))
        .await
        .expect("a leaves");
    let only_b = vec![b.to_string()];
    let seen = eventually(&only_b, within, &in_rotation).await;
    assert_eq!(seen, only_b, "a member that left takes no new requests");

    let said = lb
        .finish_drain(std::slice::from_ref(&ma), Duration::from_millis(300))
        .await
        .expect("the drain of an idle member finishes");
    assert!(!said.is_empty(), "finish_drain says what it saw");
    let seen = eventually(&only_b, within, &in_rotation).await;
    assert_eq!(seen, only_b, "after the drain");

    lb.set_members(std::slice::from_ref(&mb), &[ma.clone(), mb.clone()])
        .await
        .expect("a joins again");
    let seen = eventually(&both, within, &in_rotation).await;
    assert_eq!(seen, both, "a member that left can join again");

    lb.set_members(&[ma.clone(), mb.clone()], &[])
        .await
        .expect("every member leaves");
    let none: Vec<String> = Vec::new();
    let seen = eventually(&none, within, &in_rotation).await;
    assert_eq!(seen, none, "no member in rotation");
    lb.finish_drain(&[ma, mb], Duration::from_millis(300))
        .await
        .expect("the drain of every member");
}
