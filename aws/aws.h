/*
 * The aws/ module's public header: SigV4 signing (aws/sigv4.h), credentials and configuration
 * (aws/creds.h), the HTTP transport on the event loop (aws/transport.h), the async credential
 * provider (aws/provider.h), the retry policy (aws/retry.h), the IoT client (aws/iot.h) and the SQS
 * client (aws/sqs.h).
 */
#ifndef AWS_AWS_H
#define AWS_AWS_H

#include "aws/creds.h"
#include "aws/iot.h"
#include "aws/provider.h"
#include "aws/retry.h"
#include "aws/sigv4.h"
#include "aws/sqs.h"
#include "aws/transport.h"

#endif
