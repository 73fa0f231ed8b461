//! `tessera`: the supervisor. Reads a machine description ([`description`]), derives the layout
//! of processes, addresses and irqs ([`layout`]), and runs it: guest RAM as a shared memfd, one
//! process per device server and per CPU cluster, a QMP control socket ([`supervisor`],
//! [`qmp_glue`]). `tessera run` with no argument runs the built-in [`demo`].

pub mod demo;
pub mod description;
pub mod layout;
pub mod qmp_glue;
pub mod supervisor;
