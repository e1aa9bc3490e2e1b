//! Generated protobuf and gRPC code for hookyard's contracts (`proto/hookyard/**`).
//!
//! No logic lives here. Packages are versioned (`v1`); messages stored on NATS are in
//! [`event::v1`], the egress and token gRPC services in [`egress::v1`] and [`token::v1`], the
//! operators' API in [`admin::v1`] (whose messages also serialize as proto3 JSON).

#![allow(clippy::all, missing_docs)]

pub mod event {
    pub mod v1 {
        tonic::include_proto!("hookyard.event.v1");
    }
}

pub mod egress {
    pub mod v1 {
        tonic::include_proto!("hookyard.egress.v1");
    }
}

pub mod token {
    pub mod v1 {
        tonic::include_proto!("hookyard.token.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("hookyard.admin.v1");
        include!(concat!(env!("OUT_DIR"), "/hookyard.admin.v1.serde.rs"));
    }
}
