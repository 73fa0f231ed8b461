//! tessera-blk: placeholder until the vhost-user issue lands.
