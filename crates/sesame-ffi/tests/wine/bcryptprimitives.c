/* Test harness only: Debian 12's wine (8.0) lacks bcryptprimitives.dll,
 * where Rust's standard library finds ProcessPrng on Windows 10 and later.
 * This stand-in, placed next to the .exe under test, forwards to
 * RtlGenRandom (advapi32's SystemFunction036), which wine has. Real
 * Windows never loads it: its own DLL comes first from System32. */
#include <windows.h>

BOOLEAN NTAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
