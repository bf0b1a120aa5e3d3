# magpie-push: the WebSocket daemon (SPEC §4, §5). Build rules for it and its unit tests.

bin_PROGRAMS += push/magpie-push
push_magpie_push_SOURCES = \
	push/main.c push/push.h \
	push/server.h push/server.c push/handshake.h push/handshake.c \
	push/proto.h push/conn.h push/conn.c push/frame.h push/frame.c \
	push/chat.h push/chat.c push/chatpkt.h push/chatpkt.c \
	push/chat_send.c push/chat_online.c push/chat_history.c push/chat_order.c push/chat_site.c \
	push/timeline.h push/timeline.c push/chat_read.c push/group.h push/group_send.c \
	push/resume.h push/resume.c push/stomp.h push/stomp.c push/stompframe.h push/stompframe.c \
	push/mqtt.h push/mqtt.c push/mqttpkt.h push/mqttpkt.c \
	push/room.h push/room.c push/room_hub.c push/room_count.c push/roompkt.h push/roompkt.c \
	push/room_bridge.h push/room_bridge.c \
	push/relay.h push/relay.c push/cluster.h push/cluster.c \
	push/rdsa.h push/rdsa.c push/rdsa_cluster.h push/rdsa_cluster.c push/rdsac_route.h push/rdsac_route.c \
	push/dbpool.h push/dbpool.c \
	push/map.h push/map.c push/stats.h push/stats.c
push_magpie_push_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(LWS_CFLAGS) $(UV_CFLAGS)
push_magpie_push_LDADD = $(LIBMAGPIE) $(LWS_LIBS) $(UV_LIBS)

# Unit tests of the pure parts: packet parsing against hostile input, the hash map, room batches, STOMP frames,
# and resume.c's order rules (with the chat core, Redis and the connection layer stubbed in the test).
check_PROGRAMS += tests/unit/test_push_chatpkt tests/unit/test_push_map tests/unit/test_room_pkt \
	tests/unit/test_push_stompframe tests/unit/test_push_mqttpkt tests/unit/test_push_resume \
	tests/unit/test_push_rdsac_route
tests_unit_test_push_rdsac_route_SOURCES = tests/unit/test_push_rdsac_route.c push/rdsac_route.c push/rdsac_route.h
tests_unit_test_push_rdsac_route_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_push_rdsac_route_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_push_chatpkt_SOURCES = tests/unit/test_push_chatpkt.c push/chatpkt.c push/chatpkt.h
tests_unit_test_push_chatpkt_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_push_chatpkt_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_push_map_SOURCES = tests/unit/test_push_map.c push/map.c push/map.h
tests_unit_test_push_map_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_push_map_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_room_pkt_SOURCES = tests/unit/test_room_pkt.c push/roompkt.c push/roompkt.h
tests_unit_test_room_pkt_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_room_pkt_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_push_stompframe_SOURCES = tests/unit/test_push_stompframe.c push/stompframe.c push/stompframe.h
tests_unit_test_push_stompframe_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_push_stompframe_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_push_mqttpkt_SOURCES = tests/unit/test_push_mqttpkt.c push/mqttpkt.c push/mqttpkt.h
tests_unit_test_push_mqttpkt_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(CMOCKA_CFLAGS) -I$(srcdir)/push
tests_unit_test_push_mqttpkt_LDADD = $(LIBMAGPIE) $(CMOCKA_LIBS)
tests_unit_test_push_resume_SOURCES = tests/unit/test_push_resume.c push/resume.c push/resume.h push/frame.c \
	push/frame.h push/chatpkt.c push/chatpkt.h
tests_unit_test_push_resume_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(LWS_CFLAGS) $(UV_CFLAGS) $(CMOCKA_CFLAGS) \
	-I$(srcdir)/push
tests_unit_test_push_resume_LDADD = $(LIBMAGPIE) $(LWS_LIBS) $(UV_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_push_chatpkt tests/unit/test_push_map tests/unit/test_room_pkt tests/unit/test_push_stompframe \
	tests/unit/test_push_mqttpkt tests/unit/test_push_resume tests/unit/test_push_rdsac_route

# magpie-push's Redis client on a Redis Cluster without the daemon, driven by tests/integration/test_rdsa_cluster.py
# (built by make like tests/probes/rcluster-probe, so that 'scripts/dev test' has it in both builds; not installed).
noinst_PROGRAMS += tests/probes/rdsa-cluster-probe
tests_probes_rdsa_cluster_probe_SOURCES = tests/probes/rdsa_cluster_probe.c push/rdsa.h push/rdsa.c \
	push/rdsa_cluster.h push/rdsa_cluster.c push/rdsac_route.h push/rdsac_route.c push/map.h push/map.c
tests_probes_rdsa_cluster_probe_CFLAGS = $(AM_CFLAGS) $(LIBMAGPIE_CFLAGS) $(UV_CFLAGS) -I$(srcdir)/push
tests_probes_rdsa_cluster_probe_LDADD = $(LIBMAGPIE) $(UV_LIBS)
