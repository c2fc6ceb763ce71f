//! SGIP as a `tongdao-link` protocol: [`Sgip`] is the [`Connect`] the relay's reconnect
//! loop opens [`Client`] sessions with, and routes the SP listener's Reports and MOs to
//! the current session's inbound channel.
//!
//! An SGIP session is the SP's association with one SMG, not one TCP link: the
//! [`Client`] binds on demand and closes idle links itself (SGIP links are short-lived),
//! and Reports and MOs arrive on the SMG's own links to the [`crate::Server`]. So the
//! session's inbound receiver yields [`Inbound::Closed`] only once the client is closed.

use std::future::Future;

use tokio::sync::mpsc;
use tongdao_link::{Connect, Inbound};

use crate::client::{Client, ClientConfig, ConnectError};
use crate::server::{Inlet, Server};

/// The settings of an SGIP session: the SP's link to the SMG and where the SP's listener
/// delivers.
#[derive(Debug, Clone)]
pub struct Sgip {
    /// The SP → SMG link.
    pub client: ClientConfig,
    /// The listener's event inlet.
    pub inlet: Inlet,
    /// Capacity of each session's inbound channel.
    pub inbound_capacity: usize,
}

impl Sgip {
    /// A session factory for `client` whose events come from `server`.
    pub fn new(client: ClientConfig, server: &Server) -> Self {
        Self {
            client,
            inlet: server.inlet(),
            inbound_capacity: 4096,
        }
    }
}

impl Connect for Sgip {
    type Session = Client;
    type Error = ConnectError;

    fn protocol(&self) -> &'static str {
        "sgip12"
    }

    fn address(&self) -> &str {
        &self.client.address
    }

    /// Binds now (so a wrong address or password fails here), then points the listener's
    /// inlet at the new session's channel.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<(Client, mpsc::Receiver<Inbound>), ConnectError>> + Send {
        let this = self.clone();
        async move {
            let client = Client::connect(this.client.clone()).await?;
            let (tx, rx) = mpsc::channel(this.inbound_capacity.max(1));
            this.inlet.set(tx.clone());
            let watched = client.clone();
            tokio::spawn(async move {
                watched.closed().await;
                let _ = tx.send(Inbound::Closed("sgip session closed".into())).await;
            });
            Ok((client, rx))
        }
    }
}
