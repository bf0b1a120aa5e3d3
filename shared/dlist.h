/* dlist.h -- intrusive doubly linked lists, written once.
 *
 * An element sits in a list through two pointer fields of its own (their names are arguments, so one struct
 * can be in several lists: a connection in its user's list and in the node's list of all connections). The
 * list itself is a head pointer (DLIST_PUSH, DLIST_UNLINK) or a struct with head and tail (DLIST_APPEND,
 * DLIST_REMOVE). Unlinking clears the element's two fields; it must be in the list. O(1) each, no allocation.
 */
#ifndef MAGPIE_DLIST_H
#define MAGPIE_DLIST_H

#include <stddef.h>

/* Put e first in the list whose first element is head (an lvalue). */
#define DLIST_PUSH(head, e, prev, next)                                                                      \
    do {                                                                                                     \
        (e)->prev = NULL;                                                                                    \
        (e)->next = (head);                                                                                  \
        if ((head) != NULL)                                                                                  \
            (head)->prev = (e);                                                                              \
        (head) = (e);                                                                                        \
    } while (0)

/* Take e out of the list whose first element is head. */
#define DLIST_UNLINK(head, e, prev, next)                                                                    \
    do {                                                                                                     \
        if ((e)->prev != NULL)                                                                               \
            (e)->prev->next = (e)->next;                                                                     \
        else                                                                                                 \
            (head) = (e)->next;                                                                              \
        if ((e)->next != NULL)                                                                               \
            (e)->next->prev = (e)->prev;                                                                     \
        (e)->prev = (e)->next = NULL;                                                                        \
    } while (0)

/* Put e last in l, a struct with head and tail. */
#define DLIST_APPEND(l, e, prev, next)                                                                       \
    do {                                                                                                     \
        (e)->prev = (l).tail;                                                                                \
        (e)->next = NULL;                                                                                    \
        if ((l).tail != NULL)                                                                                \
            (l).tail->next = (e);                                                                            \
        else                                                                                                 \
            (l).head = (e);                                                                                  \
        (l).tail = (e);                                                                                      \
    } while (0)

/* Take e out of l, a struct with head and tail. */
#define DLIST_REMOVE(l, e, prev, next)                                                                       \
    do {                                                                                                     \
        if ((e)->prev != NULL)                                                                               \
            (e)->prev->next = (e)->next;                                                                     \
        else                                                                                                 \
            (l).head = (e)->next;                                                                            \
        if ((e)->next != NULL)                                                                               \
            (e)->next->prev = (e)->prev;                                                                     \
        else                                                                                                 \
            (l).tail = (e)->prev;                                                                            \
        (e)->prev = (e)->next = NULL;                                                                        \
    } while (0)

#endif
