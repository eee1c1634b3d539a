/* Knocks a door of a Sesame client config through the C ABI.
 *
 *   knock CONFIG SERVER DOOR          knock (any door type), exit 0 on success
 *   knock --packet CONFIG SERVER DOOR print the door's packet (SPA, fwknop) in hex
 *   knock --fixed CONFIG SERVER DOOR UNIX_SECS
 *                                     print a symmetric SPA door's packet at
 *                                     UNIX_SECS with fixed test nonces: the
 *                                     same bytes on every platform
 *
 * CONFIG may be "-" for the default (~/.config/sesame/client.toml).
 * Build: cc knock.c -I ../include ../../../target/debug/libsesame_ffi.a -lpthread -ldl -lm
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sesame.h"

static void print_hex(const uint8_t *bytes, size_t len) {
    for (size_t i = 0; i < len; i++) {
        printf("%02x", bytes[i]);
    }
    printf("\n");
}

static int fail(const char *what) {
    fprintf(stderr, "knock: %s: %s\n", what, sesame_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 4) {
        const char *config = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
        if (sesame_knock(config, argv[2], argv[3]) != SESAME_STATUS_OK) {
            return fail("sesame_knock");
        }
        printf("knocked %s %s (libsesame %s)\n", argv[2], argv[3], sesame_version());
        return 0;
    }
    uint8_t packet[SESAME_MAX_PACKET];
    size_t written = 0;
    if (argc == 5 && strcmp(argv[1], "--packet") == 0) {
        uint16_t port = 0;
        const char *config = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
        if (sesame_packet(config, argv[3], argv[4], packet, sizeof packet, &written, &port)
            != SESAME_STATUS_OK) {
            return fail("sesame_packet");
        }
        printf("udp/%u ", (unsigned)port);
        print_hex(packet, written);
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "--fixed") == 0) {
        uint8_t payload_nonce[SESAME_SPA_PAYLOAD_NONCE_LEN];
        uint8_t nonce[SESAME_SPA_NONCE_LEN];
        for (size_t i = 0; i < sizeof payload_nonce; i++) payload_nonce[i] = (uint8_t)i;
        for (size_t i = 0; i < sizeof nonce; i++) nonce[i] = (uint8_t)(0x80 + i);
        const char *config = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
        uint64_t unix_secs = strtoull(argv[5], NULL, 10);
        /* A buffer one byte short first: the call says how much it needs. */
        size_t needed = 0;
        if (sesame_spa_packet_with(config, argv[3], argv[4], unix_secs, payload_nonce, nonce,
                                   packet, 1, &needed) != SESAME_STATUS_BUFFER_TOO_SMALL) {
            return fail("sesame_spa_packet_with (small buffer)");
        }
        if (sesame_spa_packet_with(config, argv[3], argv[4], unix_secs, payload_nonce, nonce,
                                   packet, needed, &written) != SESAME_STATUS_OK) {
            return fail("sesame_spa_packet_with");
        }
        print_hex(packet, written);
        return 0;
    }
    fprintf(stderr,
            "usage: knock CONFIG SERVER DOOR\n"
            "       knock --packet CONFIG SERVER DOOR\n"
            "       knock --fixed CONFIG SERVER DOOR UNIX_SECS\n");
    return 2;
}
