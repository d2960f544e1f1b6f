// The container spec a handoff sends the destination (src/api/schemas/container-spec.ts), made
// by the source from the container's own configuration. Checked here before anything starts:
// a setting the spec cannot carry, or a value its schema refuses, fails the request at once,
// named, instead of a twin that silently differs or a refusal from the peer.
import { ContainerSpecSchema } from '../api/schemas/container-spec.js';
import { specFromCreateOptions, type ContainerSpec } from '../engine/container-spec.js';
import type { ContainerDetails } from '../engine/docker.js';
import { joiningHolder } from '../network/netns-holder.js';
import { UsageError } from '../util/errors.js';

/**
 * The spec of `details`' twin; joining the holder named `holderName` (the destination's copy of
 * its network namespace holder) when it has one.
 */
export function twinSpecOf(details: Pick<ContainerDetails, 'name' | 'createOptions'>, o: { holderName?: string | null } = {}): ContainerSpec {
  const options = o.holderName ? joiningHolder(details.createOptions, o.holderName) : details.createOptions;
  const { spec, unsupported } = specFromCreateOptions(options);
  if (unsupported.length > 0) {
    throw new UsageError(`container '${details.name}' has settings a handoff cannot carry: ${unsupported.join(', ')}`, {
      context: { container: details.name, unsupported },
      hint: 'create the service without them (a handoff re-creates the container elsewhere from an allow-listed spec)',
    });
  }
  const parsed = ContainerSpecSchema.safeParse(spec);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`);
    throw new UsageError(`container '${details.name}' has settings a handoff refuses: ${issues.join('; ')}`, { context: { container: details.name, issues } });
  }
  return parsed.data;
}
