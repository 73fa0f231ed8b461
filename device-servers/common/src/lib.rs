//! tessera-server-common: placeholder until the vhost-user issue lands.
