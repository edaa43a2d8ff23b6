/* The jitr unit tests' PKI (pki.h). */
#include "tests/unit/jitr/pki.h"

#include <openssl/pem.h>
#include <stdio.h>

#include "tests/harness/tt.h"

X509 *jt_load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f) {
        fclose(f);
    }
    return x;
}

int jt_make_pki(void)
{
    static int made;
    const char *d = tt_tmpdir();
    if (made) {
        return 0;
    }
    made = 1;
    return tt_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout ca.key -out ca.pem -subj /CN=Test-CA -days 30 2>/dev/null && "
                 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout other.key -out other.pem -subj /CN=Other-CA -days 30 2>/dev/null && "
                 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout dev.key -out dev.csr "
                 "-subj /C=DE/O=Acme/serialNumber=SN-42/CN=dev-0001 2>/dev/null && "
                 "openssl x509 -req -in dev.csr -CA ca.pem -CAkey ca.key -set_serial 0x1234abcd "
                 "-days 10 -out dev.pem 2>/dev/null && "
                 "openssl x509 -req -in dev.csr -CA other.pem -CAkey other.key -set_serial 7 "
                 "-days 10 -out forged.pem 2>/dev/null && "
                 "openssl x509 -in dev.pem -outform DER -out dev.der && "
                 "openssl x509 -in forged.pem -outform DER -out forged.der && "
                 "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout dev2.key -out dev2.csr -subj /CN=dev-0002 2>/dev/null && "
                 "openssl x509 -req -in dev2.csr -CA ca.pem -CAkey ca.key -set_serial 0x99 "
                 "-days 10 -out dev2.pem 2>/dev/null",
                 d);
}
