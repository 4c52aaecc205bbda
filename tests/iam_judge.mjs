// The outside judge of the stacks' IAM: @cloud-copilot/iam-simulate evaluates each request against a
// principal's identity policies and the resource's policy (and, for KMS, the key policy), as AWS
// does. Input on stdin: a JSON list of simulations {identityPolicies, resourcePolicy, request};
// output: a JSON list of {result, errors} in the same order ("Allowed", "ExplicitlyDenied",
// "ImplicitlyDenied"; errors when the simulator refuses the input, e.g. an unknown action).
import { runSimulation } from '@cloud-copilot/iam-simulate'

let input = ''
for await (const chunk of process.stdin) input += chunk
const out = []
for (const simulation of JSON.parse(input)) {
  const response = await runSimulation({ serviceControlPolicies: [], resourceControlPolicies: [], ...simulation }, {})
  out.push({ result: response.overallResult ?? null, errors: response.resultType === 'error' ? response.errors : null })
}
process.stdout.write(JSON.stringify(out))
