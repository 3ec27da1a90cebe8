//! Routes through the socket: list, replace, delete (one or many), and
//! `ip route get`. Messages come from `message.rs`.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use weft_core::Family;

use super::super::{MAIN_TABLE, Netlink, NetlinkError, conn};
use super::message::{address_family, op_for, route_message, route_of};
use super::{RouteInfo, RouteSpec};

impl Netlink {
    /// The routes of `family` in the main table.
    pub async fn routes(&self, family: Family) -> Result<Vec<RouteInfo>, NetlinkError> {
        self.routes_in_table(family, MAIN_TABLE).await
    }

    /// The routes of `family` in `table`.
    pub async fn routes_in_table(
        &self,
        family: Family,
        table: u32,
    ) -> Result<Vec<RouteInfo>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = address_family(family);
        let op = || format!("listing {family} routes");
        let answers = conn::dump(&self.handle, RouteNetlinkMessage::GetRoute(message), op).await?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_of(r),
                _ => None,
            })
            .filter(|r| r.table == table)
            .collect())
    }

    /// Installs `route`, replacing any route to the same destination (same
    /// table, type-independent key: dst, tos, priority), so repeating it is
    /// harmless.
    pub async fn replace_route(&self, route: &RouteSpec) -> Result<(), NetlinkError> {
        let message = route_message(route, false)?;
        let op = || format!("replacing route {route}");
        conn::ack(&self.handle, message, NLM_F_CREATE | NLM_F_REPLACE, op).await
    }

    /// Deletes `route`, matching its protocol, gateway and device; any
    /// scope. `NotFound` if no such route exists.
    pub async fn delete_route(&self, route: &RouteSpec) -> Result<(), NetlinkError> {
        let message = route_message(route, true)?;
        let op = || format!("deleting route {route}");
        conn::ack(&self.handle, message, 0, op).await
    }

    /// [`Netlink::replace_route`] for many routes, sent in batches on the one
    /// connection; one result per route, in order. See
    /// [`RouteSpec::metric`] for what limits its speed at 10 000 routes.
    pub async fn replace_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.route_batch(routes, false).await
    }

    /// [`Netlink::delete_route`] for many routes; one result per route.
    pub async fn delete_routes(&self, routes: &[RouteSpec]) -> Vec<Result<(), NetlinkError>> {
        self.route_batch(routes, true).await
    }

    async fn route_batch(
        &self,
        routes: &[RouteSpec],
        delete: bool,
    ) -> Vec<Result<(), NetlinkError>> {
        let verb = if delete { "deleting" } else { "replacing" };
        let flags = if delete {
            0
        } else {
            NLM_F_CREATE | NLM_F_REPLACE
        };
        let mut results: Vec<Option<Result<(), NetlinkError>>> = Vec::with_capacity(routes.len());
        let mut messages = Vec::with_capacity(routes.len());
        let mut sent = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            match route_message(route, delete) {
                Ok(m) => {
                    messages.push(m);
                    sent.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let op = |k: usize| format!("{verb} route {}", routes[sent[k]]);
        let answers = conn::ack_batch(&self.handle, messages, flags, &op).await;
        for (k, answer) in answers.into_iter().enumerate() {
            results[sent[k]] = Some(answer);
        }
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| {
                    Err(NetlinkError::ConnectionClosed {
                        op: op_for(verb, &routes[i]),
                    })
                })
            })
            .collect()
    }

    /// The route the kernel would use to reach `dst`, like `ip route get`;
    /// `None` when `dst` is unreachable. flannel's DirectRouting and host-gw
    /// decide from it whether a peer is on-link: one route, no gateway.
    pub async fn route_get(&self, dst: IpAddr) -> Result<Option<RouteInfo>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = address_family(Family::of(dst));
        message.header.destination_prefix_length = Family::of(dst).bits();
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let op = || format!("looking up the route to {dst}");
        match conn::get(&self.handle, RouteNetlinkMessage::GetRoute(message), 0, op).await {
            Ok(RouteNetlinkMessage::NewRoute(r)) => Ok(route_of(r)),
            Ok(other) => Err(NetlinkError::Protocol {
                op: format!("looking up the route to {dst}"),
                detail: format!("expected a route, got {other:?}"),
            }),
            Err(NetlinkError::Kernel { errno, .. })
                if errno == nix::libc::ENETUNREACH || errno == nix::libc::EHOSTUNREACH =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
