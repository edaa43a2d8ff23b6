/*
 * The aws/ module's public header: SigV4 signing (aws/sigv4.h) and credentials, configuration
 * and the credential chain's pure parts (aws/creds.h). The async transport will join it later.
 */
#ifndef AWS_AWS_H
#define AWS_AWS_H

#include "aws/creds.h"
#include "aws/sigv4.h"

#endif
