#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Link events: a device deleted under the reconciler is noticed at once.

mod common;

use std::time::Duration;

use common::netns::{in_new_netns, ip, vxlan_node};
use futures::StreamExt;
use weft_dataplane::netlink::{LinkEvent, Netlink};

#[test]
fn deleting_the_vxlan_device_is_reported() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let mut events = nl.link_events()?;
        let (_, vx) = vxlan_node(&nl).await?;
        // Someone else deletes it, as `ip link del flannel.1` on a node.
        ip(&["link", "del", "flannel.1"])?;
        let deadline = Duration::from_secs(5);
        let mut saw_new = false;
        let deleted = tokio::time::timeout(deadline, async {
            while let Some(event) = events.next().await {
                match event {
                    LinkEvent::New { ref name, .. } if name == "flannel.1" => saw_new = true,
                    LinkEvent::Deleted { index, name } if name == "flannel.1" => {
                        return Some(index);
                    }
                    _ => {}
                }
            }
            None
        })
        .await?;
        assert_eq!(deleted, Some(vx));
        assert!(saw_new, "the creation was reported too");
        Ok(())
    });
}

#[test]
fn events_from_another_namespace_thread_are_refused() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        // A new thread starts in its creator's namespace; this one leaves it.
        let refused = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { nl.link_events().map(|_| ()) })
        })
        .join()
        .unwrap();
        assert!(
            refused.is_err(),
            "a thread of another namespace must not subscribe for this one"
        );
        Ok(())
    });
}

#[test]
fn overrun_is_reported_as_lost() {
    in_new_netns(|| async {
        let nl = Netlink::connect()?;
        let mut events = nl.link_events()?;
        // `ip` blocks this (only) runtime thread, so nobody reads the event
        // socket while the kernel fills it with a thousand notifications.
        let batch = std::env::temp_dir().join(format!("weft-events-{}.batch", std::process::id()));
        let lines: String = (0..500)
            .map(|i| format!("link add v{i} type veth peer name v{i}p\n"))
            .collect();
        std::fs::write(&batch, lines)?;
        let result = ip(&["-batch", batch.to_str().unwrap()]);
        std::fs::remove_file(&batch)?;
        result?;
        let lost = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = events.next().await {
                if event == LinkEvent::Lost {
                    return true;
                }
            }
            false
        })
        .await?;
        assert!(lost, "the overrun was reported");
        Ok(())
    });
}
