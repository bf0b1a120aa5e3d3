# libmagpie: everything the daemons share (SPEC §1). A static library linked into every binary.

noinst_LIBRARIES += shared/libmagpie.a
shared_libmagpie_a_SOURCES = \
	shared/magpie.h shared/magpie.c \
	shared/config.h shared/config.c shared/config_table.c \
	shared/cli.h shared/cli.c \
	shared/log.h shared/log.c \
	shared/auth.h shared/auth.c \
	shared/id.h shared/id.c \
	shared/envelope.h shared/envelope.c \
	shared/packet.h shared/packet.c \
	shared/rds.h shared/rds.c shared/sentinel.h shared/sentinel.c shared/rcluster.h shared/rcluster.c \
	shared/db.h shared/db.c \
	shared/metrics.h shared/metrics.c \
	shared/dlist.h shared/keys.h shared/keys.c shared/stream.h shared/group_lua.h shared/bus.h shared/presence.h shared/notify_event.h
nodist_shared_libmagpie_a_SOURCES = shared/room.pb-c.c shared/room.pb-c.h
shared_libmagpie_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS) $(JWT_CFLAGS) $(HIREDIS_CFLAGS) $(MARIADB_CFLAGS) \
	$(MHD_CFLAGS) $(PROTOBUFC_CFLAGS)

# What a binary linking libmagpie needs.
LIBMAGPIE = shared/libmagpie.a $(JANSSON_LIBS) $(JWT_LIBS) $(HIREDIS_LIBS) $(MARIADB_LIBS) $(MHD_LIBS) \
	$(PROTOBUFC_LIBS) $(LIBS)
LIBMAGPIE_CFLAGS = $(JANSSON_CFLAGS) $(JWT_CFLAGS) $(HIREDIS_CFLAGS) $(MARIADB_CFLAGS) $(MHD_CFLAGS) \
	$(PROTOBUFC_CFLAGS)

# The room protocol (seed 004), compiled by protoc-c at build time.
EXTRA_DIST += shared/room.proto
BUILT_SOURCES += shared/room.pb-c.c shared/room.pb-c.h
CLEANFILES += shared/room.pb-c.c shared/room.pb-c.h
shared/room.pb-c.h: shared/room.pb-c.c
shared/room.pb-c.c: $(srcdir)/shared/room.proto
	$(AM_V_GEN)$(MKDIR_P) shared && \
	$(PROTOC_C) --proto_path=$(srcdir)/shared --c_out=shared $(srcdir)/shared/room.proto

bin_PROGRAMS += shared/magpie-config
shared_magpie_config_SOURCES = shared/magpie-config.c
shared_magpie_config_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS)
shared_magpie_config_LDADD = $(LIBMAGPIE)

# magpie.conf.example is generated from the config table; `make check` fails when they differ and
# `make update-example` rewrites it.
update-example: shared/magpie-config$(EXEEXT)
	shared/magpie-config$(EXEEXT) example > $(srcdir)/magpie.conf.example
.PHONY: update-example
