#include "aws/aws.h"
#include "tests/harness/tt.h"
static int test_nothing(void) { return 0; }
int main(int argc, char **argv)
{
    static const struct tt_case cases[] = { { "nothing", test_nothing } };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
