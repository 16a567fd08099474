/*
 * own_assign (host/core/ownership.h): balanced, sticky, deterministic.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/ownership.h"

#define MAXP 1024

static void counts(const int *target, unsigned np, size_t nh, size_t *per)
{
    memset(per, 0, nh * sizeof *per);
    for (unsigned p = 0; p < np; p++) {
        cr_assert(target[p] >= 0 && (size_t)target[p] < nh, "partition %u unassigned", p);
        per[target[p]]++;
    }
}

static void expect_balanced(const int *target, unsigned np, size_t nh)
{
    size_t per[64];
    counts(target, np, nh, per);
    for (size_t i = 0; i < nh; i++)
        cr_expect(per[i] == np / nh || per[i] == np / nh + 1,
                  "host %zu gets %zu of %u partitions over %zu hosts", i, per[i], np, nh);
}

Test(ownership_assign, nobody_holds_anything_yet)
{
    int owner[12], target[12];
    for (int p = 0; p < 12; p++)
        owner[p] = -1;
    own_assign(12, 3, owner, target);
    expect_balanced(target, 12, 3);
    own_assign(12, 0, owner, target);
    for (int p = 0; p < 12; p++)
        cr_expect_eq(target[p], -1, "no host, yet partition %d is assigned", p);
}

Test(ownership_assign, a_balanced_assignment_stays_as_it_is)
{
    int owner[12], target[12];
    for (int p = 0; p < 12; p++)
        owner[p] = (p * 7) % 3; /* any balanced spread */
    own_assign(12, 3, owner, target);
    for (int p = 0; p < 12; p++)
        cr_expect_eq(target[p], owner[p], "partition %d moved", p);
}

Test(ownership_assign, a_joining_host_takes_only_what_it_needs)
{
    int owner[12], target[12];
    for (int p = 0; p < 12; p++)
        owner[p] = p % 3; /* hosts 0..2 hold 4 each; host 3 joins */
    own_assign(12, 4, owner, target);
    expect_balanced(target, 12, 4);
    int moved = 0;
    for (int p = 0; p < 12; p++) {
        if (target[p] != owner[p]) {
            moved++;
            cr_expect_eq(target[p], 3, "partition %d moved between two old hosts", p);
        }
    }
    cr_expect_eq(moved, 3, "%d partitions moved; 3 must", moved);
}

Test(ownership_assign, a_leaving_host_s_partitions_spread_over_the_others)
{
    int owner[12], target[12];
    for (int p = 0; p < 12; p++)
        owner[p] = p % 4 == 3 ? -1 : p % 4; /* host 3 is gone: its leases count as free */
    own_assign(12, 3, owner, target);
    expect_balanced(target, 12, 3);
    for (int p = 0; p < 12; p++)
        if (owner[p] >= 0)
            cr_expect_eq(target[p], owner[p], "partition %d of a staying host moved", p);
}

Test(ownership_assign, the_remainder_stays_with_who_holds_it)
{
    /* 7 partitions over 3 hosts: one host holds 3 (its extra one stays);
     * nothing must move */
    int owner[7] = {2, 2, 2, 0, 0, 1, 1}, target[7];
    own_assign(7, 3, owner, target);
    for (int p = 0; p < 7; p++)
        cr_expect_eq(target[p], owner[p], "partition %d moved", p);
}

Test(ownership_assign, an_overloaded_host_gives_up_its_highest_partitions)
{
    int owner[6] = {0, 0, 0, 0, 0, 0}, target[6];
    own_assign(6, 2, owner, target);
    expect_balanced(target, 6, 2);
    for (int p = 0; p < 3; p++)
        cr_expect_eq(target[p], 0, "host 0 keeps its lowest partitions (%d)", p);
}

Test(ownership_assign, random_states_are_always_balanced_and_keep_what_they_can)
{
    static int owner[MAXP], target[MAXP], again[MAXP];
    unsigned seed = 42;
    for (int round = 0; round < 2000; round++) {
        unsigned np = 1 + (unsigned)rand_r(&seed) % 200;
        size_t nh = 1 + (size_t)rand_r(&seed) % 12;
        size_t held[64] = {0};
        for (unsigned p = 0; p < np; p++) {
            int o = (int)(rand_r(&seed) % (unsigned)(nh + 2)) - 1; /* -1 .. nh: nh = not live */
            owner[p] = o >= (int)nh ? -1 : o;
            if (owner[p] >= 0)
                held[owner[p]]++;
        }
        own_assign(np, nh, owner, target);
        expect_balanced(target, np, nh);
        /* sticky: a host keeps min(held, its share) of what it holds */
        size_t kept[64] = {0};
        for (unsigned p = 0; p < np; p++)
            if (owner[p] >= 0 && target[p] == owner[p])
                kept[owner[p]]++;
        for (size_t i = 0; i < nh; i++) {
            size_t share = np / nh;
            cr_assert_geq(kept[i], held[i] < share ? held[i] : share,
                          "round %d: host %zu held %zu, kept %zu (share %zu)", round, i, held[i],
                          kept[i], share);
        }
        /* deterministic, and stable: applying it changes nothing more */
        own_assign(np, nh, target, again);
        cr_assert_eq(memcmp(target, again, np * sizeof *target), 0, "round %d: not stable", round);
    }
}
