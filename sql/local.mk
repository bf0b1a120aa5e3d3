# Schema migrations and the command that applies them.

bin_PROGRAMS += sql/magpie-migrate
sql_magpie_migrate_SOURCES = sql/migrate.c
sql_magpie_migrate_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS)
sql_magpie_migrate_LDADD = $(LIBMAGPIE)

sqldir = $(pkgdatadir)/sql
dist_sql_DATA = sql/001_init.sql sql/002_messages_client_id_bytes.sql sql/003_timeline_seqs.sql sql/004_groups.sql
