//! tessera-console: placeholder until the vhost-user issue lands.
