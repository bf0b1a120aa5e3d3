/* handlers.h -- every endpoint's handler (SPEC §3), by the file that holds it. The route table in
 * router.c says which method and path reach each one and who may call it. */
#ifndef MAGPIE_HTTP_HANDLERS_H
#define MAGPIE_HTTP_HANDLERS_H

#include "call.h"

/* sms.c */
void sms_send_code(struct call *c);
void sms_login(struct call *c);

/* user.c */
void user_logout(struct call *c);
void user_me(struct call *c);
void user_friends(struct call *c);
void user_im_token(struct call *c);
void user_route(struct call *c);

/* conv.c */
void conv_list(struct call *c);

/* groups.c */
void groups_create(struct call *c);
void groups_list(struct call *c);
void groups_get(struct call *c);
void groups_update(struct call *c);
void groups_members(struct call *c);
void groups_leave(struct call *c);
void groups_delete(struct call *c);

/* qr.c */
void qr_create(struct call *c);
void qr_svg(struct call *c);
void qr_session_login(struct call *c);
void qr_scan(struct call *c);
void qr_confirm(struct call *c);
void qr_cancel(struct call *c);

/* msg.c */
void msg_post(struct call *c);
void msg_test_token(struct call *c);

/* admin.c */
void admin_friends(struct call *c);
void admin_orders(struct call *c);
void admin_kick(struct call *c);

/* ops.c */
void ops_healthz(struct call *c);
void ops_metrics(struct call *c);

#endif
