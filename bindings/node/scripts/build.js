'use strict'
// The package's install/build script: builds the native module from source
// with the napi CLI (cargo build --release in this Cargo workspace). When
// the package is installed from a local path, npm links the directory
// without installing its own dependencies first, so this installs them
// (the napi CLI) when they are missing.

const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const dir = path.resolve(__dirname, '..')

function napiBin() {
  const pkg = require.resolve('@napi-rs/cli/package.json', { paths: [dir] })
  const meta = JSON.parse(fs.readFileSync(pkg, 'utf8'))
  const bin = typeof meta.bin === 'string' ? meta.bin : meta.bin.napi
  return path.join(path.dirname(pkg), bin)
}

let bin
try {
  bin = napiBin()
} catch (_) {
  console.error('sluice-client: installing the napi CLI to build the native module')
  // A clean environment for the nested npm: the outer install's settings
  // (global, prefix, omit, ...) are about the outer project.
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') || /^npm_config_(cache|registry|userconfig|cafile)$/i.test(k)) env[k] = v
  }
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  execFileSync(npm, ['install', '--omit=dev', '--ignore-scripts', '--no-save', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit', env })
  bin = napiBin()
}

const args = ['build', '--platform', '--release', '--js', 'native.js', '--dts', 'native.d.ts', ...process.argv.slice(2)]
execFileSync(process.execPath, [bin, ...args], { cwd: dir, stdio: 'inherit' })
