//! The throwaway cluster of `stockcast_infer::cluster`, unwrapped for tests.

use stockcast_infer::testkit::LocalCluster;

pub(crate) struct Cluster(pub(crate) LocalCluster);

impl Cluster {
    pub(crate) fn start() -> Self {
        Self(LocalCluster::start().unwrap())
    }

    /// A URL of a fresh database `name` in this cluster.
    pub(crate) fn url(&self, name: &str) -> String {
        self.0.create_database(name).unwrap()
    }
}
