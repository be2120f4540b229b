import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A stand-in for the kernel's LIO configfs tree (/sys/kernel/config/target), for hosts without LIO
 * (these test machines: no configfs, no target_core_mod). Honest about what it is:
 *
 * - The tree is ordinary directories and files in a temporary folder, laid out as the kernel lays
 *   configfs out for the objects Cinder's cinder-rtstool makes: the names below are the kernel's
 *   (drivers/target/target_core_configfs.c, target_core_fabric_configfs.c,
 *   iscsi/iscsi_target_configfs.c) with their default values, and where each object sits follows
 *   rtslib-fb (core/<plugin>_<n>/<name>, iscsi/<iqn>/tpgt_<n>/{lun,np,acls}).
 * - What the kernel does on mkdir and rmdir (an object's attribute files and default groups appear
 *   with it and go with it; a group still holding child objects or linked to by a LUN cannot go;
 *   mkdir where the kernel has no such object is refused) is done by a small LD_PRELOAD shim
 *   (configfs-standin.c) in the relay's own process, synchronously, as the kernel does it. A
 *   watcher process would race the relay's next write; FUSE would be a second filesystem to trust.
 * - Attribute writes are plain file writes: nothing checks a value or acts on it (no device is
 *   opened on `enable`, no socket is bound for a portal). The tests read back what was written,
 *   which is what a kernel would be told; whether a kernel accepts it was not run here.
 *
 * The shim reaches the relay through LD_PRELOAD in the environment the relay inherits; the driver
 * finds the tree through CINDERLIB_MCP_LIO_CONFIGFS_ROOT (lio.ts).
 */
type Layout = { [name: string]: string | Layout };

const statistics = (...groups: string[]): Layout => Object.fromEntries(groups.map((group) => [group, {}]));

const DEVICE_ATTRIB: Layout = Object.fromEntries(
  Object.entries({
    alua_support: '1',
    block_size: '512',
    emulate_3pc: '1',
    emulate_caw: '1',
    emulate_dpo: '1',
    emulate_fua_read: '1',
    emulate_fua_write: '1',
    emulate_model_alias: '1',
    emulate_pr: '1',
    emulate_rest_reord: '0',
    emulate_tas: '1',
    emulate_tpu: '0',
    emulate_tpws: '0',
    emulate_ua_intlck_ctrl: '0',
    emulate_write_cache: '0',
    enforce_pr_isids: '1',
    force_pr_aptpl: '0',
    hw_block_size: '512',
    hw_max_sectors: '16384',
    hw_pi_prot_type: '0',
    hw_queue_depth: '128',
    is_nonrot: '0',
    max_unmap_block_desc_count: '0',
    max_unmap_lba_count: '0',
    max_write_same_len: '0',
    optimal_sectors: '16384',
    pgr_support: '1',
    pi_prot_format: '0',
    pi_prot_type: '0',
    pi_prot_verify: '0',
    queue_depth: '128',
    unmap_granularity: '0',
    unmap_granularity_alignment: '0',
    unmap_zeroes_data: '0',
  }).map(([name, value]) => [name, `${value}\n`]),
);

/** A backstore device (se_device): target_core_configfs.c's target_core_dev_item and its default groups. */
const DEVICE: Layout = {
  alias: '',
  control: '',
  enable: '0\n',
  info: 'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 0\n',
  lba_map: '',
  udev_path: '',
  attrib: DEVICE_ATTRIB,
  pr: Object.fromEntries(
    [
      'res_aptpl_active',
      'res_aptpl_metadata',
      'res_holder',
      'res_pr_all_tgt_pts',
      'res_pr_generation',
      'res_pr_holder_tg_port',
      'res_pr_registered_i_pts',
      'res_pr_type',
      'res_type',
    ].map((name) => [name, '']),
  ),
  wwn: Object.fromEntries(
    [
      'company_id',
      'product_id',
      'revision',
      'vendor_id',
      'vpd_assoc_logical_unit',
      'vpd_assoc_scsi_target_device',
      'vpd_assoc_target_port',
      'vpd_protocol_identifier',
      'vpd_unit_serial',
    ].map((name) => [name, '']),
  ),
  alua: { default_tg_pt_gp: { alua_access_state: '0\n', alua_access_status: 'None\n', members: '', tg_pt_gp_id: '0\n' } },
  statistics: statistics('scsi_dev', 'scsi_lu', 'scsi_tgt_dev'),
};

const HBA: Layout = { hba_info: 'HBA Index: 0 plugin: stand-in\n', hba_mode: '0\n' };

const AUTH: Layout = { authenticate_target: '0\n', password: '', password_mutual: '', userid: '', userid_mutual: '' };

const ISCSI_PARAMS: Layout = Object.fromEntries(
  Object.entries({
    AuthMethod: 'CHAP,None',
    DataDigest: 'CRC32C,None',
    DataPDUInOrder: 'Yes',
    DataSequenceInOrder: 'Yes',
    DefaultTime2Retain: '20',
    DefaultTime2Wait: '2',
    ErrorRecoveryLevel: '0',
    FirstBurstLength: '65536',
    HeaderDigest: 'CRC32C,None',
    IFMarkInt: 'Reject',
    IFMarker: 'No',
    ImmediateData: 'Yes',
    InitialR2T: 'Yes',
    MaxBurstLength: '262144',
    MaxConnections: '1',
    MaxOutstandingR2T: '1',
    MaxRecvDataSegmentLength: '8192',
    MaxXmitDataSegmentLength: '262144',
    OFMarkInt: 'Reject',
    OFMarker: 'No',
    TargetAlias: 'LIO Target',
  }).map(([name, value]) => [name, `${value}\n`]),
);

/** iscsi_target_configfs.c: the TPG (lio_target_tpg_attrs and its attrib, auth and param groups). */
const TPG: Layout = {
  dynamic_sessions: '',
  enable: '0\n',
  rtpi: '0\n',
  acls: {},
  lun: {},
  np: {},
  attrib: Object.fromEntries(
    Object.entries({
      authentication: '1',
      cache_dynamic_acls: '0',
      default_cmdsn_depth: '64',
      default_erl: '0',
      demo_mode_discovery: '1',
      demo_mode_write_protect: '1',
      fabric_prot_type: '0',
      generate_node_acls: '0',
      login_keys_workaround: '1',
      login_timeout: '15',
      netif_timeout: '2',
      prod_mode_write_protect: '0',
      t10_pi: '0',
      tpg_enabled_sendtargets: '1',
    }).map(([name, value]) => [name, `${value}\n`]),
  ),
  auth: AUTH,
  param: ISCSI_PARAMS,
};

/** A node ACL (lio_target_nacl_attrs with its attrib, auth and param groups). */
const ACL: Layout = {
  cmdsn_depth: '64\n',
  info: 'No active iSCSI Session for Initiator Endpoint\n',
  tag: '',
  attrib: Object.fromEntries(
    Object.entries({
      dataout_timeout: '3',
      dataout_timeout_retries: '5',
      default_erl: '0',
      nopin_response_timeout: '30',
      nopin_timeout: '15',
      random_datain_pdu_offsets: '0',
      random_datain_seq_offsets: '0',
      random_r2t_offsets: '0',
    }).map(([name, value]) => [name, `${value}\n`]),
  ),
  auth: AUTH,
  param: Object.fromEntries(
    [
      'DataPDUInOrder',
      'DataSequenceInOrder',
      'DefaultTime2Retain',
      'DefaultTime2Wait',
      'ErrorRecoveryLevel',
      'FirstBurstLength',
      'ImmediateData',
      'InitialR2T',
      'MaxBurstLength',
      'MaxConnections',
      'MaxOutstandingR2T',
    ].map((name) => [name, 'No Active iSCSI Session\n']),
  ),
  fabric_statistics: {},
};

/** Which object a mkdir makes where: fnmatch patterns relative to the root, as configfs's make_group callbacks decide. */
const OBJECTS: Array<[pattern: string, kind: string, layout: Layout]> = [
  ['core/iblock_*', 'hba', HBA],
  ['core/fileio_*', 'hba', HBA],
  ['core/iblock_*/*', 'device', DEVICE],
  ['core/fileio_*/*', 'device', DEVICE],
  [
    'iscsi',
    'fabric',
    {
      lio_version: 'Datera Inc. iSCSI Target v4.1.0\n',
      discovery_auth: { ...AUTH, enforce_discovery_auth: '0\n' },
    },
  ],
  [
    'iscsi/*',
    'target',
    { cmd_completion_affinity: '-1\n', fabric_statistics: statistics('iscsi_instance', 'iscsi_login_stats', 'iscsi_logout_stats', 'iscsi_sess_err', 'iscsi_tgt_attr') },
  ],
  ['iscsi/*/tpgt_*', 'tpg', TPG],
  [
    'iscsi/*/tpgt_*/lun/lun_*',
    'lun',
    { alua_tg_pt_gp: '', alua_tg_pt_offline: '0\n', alua_tg_pt_status: '0\n', alua_tg_pt_write_md: '0\n', statistics: statistics('scsi_port', 'scsi_tgt_port', 'scsi_transport') },
  ],
  ['iscsi/*/tpgt_*/np/*', 'portal', { cxgbit: '0\n', iser: '0\n' }],
  ['iscsi/*/tpgt_*/acls/*', 'acl', ACL],
  ['iscsi/*/tpgt_*/acls/*/lun_*', 'mapped-lun', { write_protect: '0\n', statistics: statistics('scsi_att_intr_port', 'scsi_auth_intr') }],
];

function materialize(dir: string, layout: Layout): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(layout)) {
    if (typeof content === 'string') writeFileSync(join(dir, name), content);
    else materialize(join(dir, name), content);
  }
}

export interface ConfigfsStandin {
  /** The stand-in for /sys/kernel/config/target. */
  root: string;
  /** What the relay's environment needs: LD_PRELOAD and the shim's settings. */
  env: Record<string, string>;
  read(path: string): string;
  exists(path: string): boolean;
  /** Where a symlink points, or undefined. */
  link(path: string): string | undefined;
  /** Every path under `path` (relative), with "@ -> target" for links: what a kernel would hold. */
  tree(path?: string): string[];
  cleanup(): void;
}

/** Needs cc (CI installs g++, which brings it) and perl; makes a fresh tree with only what the kernel has after modprobe target_core_mod. */
export function makeConfigfsStandin(): ConfigfsStandin {
  const dir = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-configfs-'));
  const shim = join(dir, 'configfs-standin.so');
  const source = join(dirname(fileURLToPath(import.meta.url)), 'configfs-standin.c');
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', shim, source, '-ldl'], { stdio: 'pipe' });
  const root = join(dir, 'sys', 'kernel', 'config', 'target');
  materialize(root, {
    version: 'Target Engine Core ConfigFS Infrastructure v5.0 on Linux/x86_64 (stand-in)\n',
    dbroot: '/etc/target\n',
    core: { alua: { lu_gps: { default_lu_gp: { lu_gp_id: '0\n', members: '' } } } },
  });
  const rules: string[] = [];
  for (const [pattern, kind, layout] of OBJECTS) {
    const template = join(dir, 'templates', kind);
    if (!existsSync(template)) materialize(template, layout);
    rules.push(`${pattern}\t${template}`);
  }
  writeFileSync(join(dir, 'rules'), `${rules.join('\n')}\n`);
  const at = (path: string) => (path.startsWith('/') ? path : join(root, path));
  const tree = (path = ''): string[] => {
    const base = at(path);
    const out: string[] = [];
    const walk = (current: string, relative: string) => {
      for (const name of readdirSync(current).sort()) {
        const full = join(current, name);
        const rel = relative ? `${relative}/${name}` : name;
        const stat = lstatSync(full);
        if (stat.isSymbolicLink()) out.push(`${rel}@ -> ${readlinkSync(full)}`);
        else if (stat.isDirectory()) {
          out.push(`${rel}/`);
          walk(full, rel);
        } else out.push(rel);
      }
    };
    walk(base, '');
    return out;
  };
  return {
    root,
    env: { LD_PRELOAD: shim, CONFIGFS_STANDIN_ROOT: root, CONFIGFS_STANDIN_RULES: join(dir, 'rules') },
    read: (path) => readFileSync(at(path), 'utf8'),
    exists: (path) => existsSync(at(path)),
    link: (path) => {
      try {
        return readlinkSync(at(path));
      } catch {
        return undefined;
      }
    },
    tree,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
