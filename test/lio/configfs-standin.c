/*
 * The configfs stand-in's one piece of "kernel" (see configfs-standin.ts): an LD_PRELOAD shim that
 * gives mkdir(2) and rmdir(2) configfs's meaning under CONFIGFS_STANDIN_ROOT, synchronously, for
 * the process it is loaded into (the configfs relay's perl).
 *
 *   mkdir  a path whose place matches a rule (fnmatch pattern relative to the root, in
 *          CONFIGFS_STANDIN_RULES: "pattern<TAB>template dir" per line) is made and filled with the
 *          template's attribute files and default groups, as the kernel's make_group does; a path
 *          no rule allows is EPERM, as configfs answers where a group has no make_group.
 *   rmdir  of such a directory is EBUSY while a symlink under the root points at it (a LUN or a
 *          mapped LUN), ENOTEMPTY while it holds anything its template did not make (a child
 *          group, a symlink), and otherwise removes the template's items with it.
 *
 * Attribute files are ordinary files: a write replaces the content, nothing validates it. Writes
 * that the kernel would act on (enable, control) are read back by the tests instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_mkdir)(const char *, mode_t);
static int (*real_rmdir)(const char *);

static void bind_real(void) {
  if (!real_mkdir) real_mkdir = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
  if (!real_rmdir) real_rmdir = (int (*)(const char *))dlsym(RTLD_NEXT, "rmdir");
}

/* The path relative to the stand-in root, or NULL when it is elsewhere. */
static const char *under_root(const char *path) {
  const char *root = getenv("CONFIGFS_STANDIN_ROOT");
  if (!root || !*root) return NULL;
  size_t n = strlen(root);
  if (strncmp(path, root, n) != 0 || path[n] != '/') return NULL;
  return path + n + 1;
}

static int template_for(const char *relative, char *out, size_t size) {
  const char *rules = getenv("CONFIGFS_STANDIN_RULES");
  FILE *file = rules ? fopen(rules, "r") : NULL;
  if (!file) return 0;
  char line[PATH_MAX * 2];
  int found = 0;
  while (!found && fgets(line, sizeof line, file)) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    char *template = tab + 1;
    template[strcspn(template, "\n")] = '\0';
    if (fnmatch(line, relative, FNM_PATHNAME) == 0) {
      snprintf(out, size, "%s", template);
      found = 1;
    }
  }
  fclose(file);
  return found;
}

static int copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY);
  if (in < 0) return -1;
  int out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (out < 0) {
    close(in);
    return -1;
  }
  char buffer[4096];
  ssize_t n;
  while ((n = read(in, buffer, sizeof buffer)) > 0) {
    if (write(out, buffer, (size_t)n) != n) n = -1;
    if (n < 0) break;
  }
  close(in);
  close(out);
  return n < 0 ? -1 : 0;
}

static int copy_tree(const char *from, const char *to) {
  DIR *dir = opendir(from);
  if (!dir) return -1;
  struct dirent *entry;
  int result = 0;
  while (result == 0 && (entry = readdir(dir))) {
    if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
    char source[PATH_MAX], target[PATH_MAX];
    struct stat st;
    snprintf(source, sizeof source, "%s/%s", from, entry->d_name);
    snprintf(target, sizeof target, "%s/%s", to, entry->d_name);
    if (lstat(source, &st) != 0) result = -1;
    else if (S_ISDIR(st.st_mode)) result = real_mkdir(target, 0755) == 0 ? copy_tree(source, target) : -1;
    else result = copy_file(source, target);
  }
  closedir(dir);
  return result;
}

/* True when everything in `dir` is something `template` has, of the same kind. */
static int only_template_items(const char *dir, const char *template) {
  DIR *handle = opendir(dir);
  if (!handle) return 0;
  struct dirent *entry;
  int only = 1;
  while (only && (entry = readdir(handle))) {
    if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
    char here[PATH_MAX], there[PATH_MAX];
    struct stat a, b;
    snprintf(here, sizeof here, "%s/%s", dir, entry->d_name);
    snprintf(there, sizeof there, "%s/%s", template, entry->d_name);
    if (lstat(here, &a) != 0 || lstat(there, &b) != 0 || (a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) only = 0;
    else if (S_ISDIR(a.st_mode)) only = only_template_items(here, there);
  }
  closedir(handle);
  return only;
}

static int remove_contents(const char *dir) {
  DIR *handle = opendir(dir);
  if (!handle) return -1;
  struct dirent *entry;
  int result = 0;
  while (result == 0 && (entry = readdir(handle))) {
    if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
    if (lstat(path, &st) != 0) result = -1;
    else if (S_ISDIR(st.st_mode)) result = remove_contents(path) == 0 ? real_rmdir(path) : -1;
    else result = unlink(path);
  }
  closedir(handle);
  return result;
}

static const char *link_wanted;
static int link_found;

static int look_for_link(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag != FTW_SL) return 0;
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = '\0';
  if (!strcmp(target, link_wanted)) {
    link_found = 1;
    return 1;
  }
  return 0;
}

static int is_linked(const char *path) {
  link_wanted = path;
  link_found = 0;
  nftw(getenv("CONFIGFS_STANDIN_ROOT"), look_for_link, 32, FTW_PHYS);
  return link_found;
}

int mkdir(const char *path, mode_t mode) {
  bind_real();
  const char *relative = under_root(path);
  if (!relative) return real_mkdir(path, mode);
  char template[PATH_MAX];
  if (!template_for(relative, template, sizeof template)) {
    errno = EPERM;
    return -1;
  }
  if (real_mkdir(path, 0755) != 0) return -1;
  if (copy_tree(template, path) != 0) {
    int saved = errno;
    remove_contents(path);
    real_rmdir(path);
    errno = saved ? saved : ENOMEM;
    return -1;
  }
  return 0;
}

int rmdir(const char *path) {
  bind_real();
  const char *relative = under_root(path);
  char template[PATH_MAX];
  if (!relative || !template_for(relative, template, sizeof template)) return real_rmdir(path);
  struct stat st;
  if (lstat(path, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  if (is_linked(path)) {
    errno = EBUSY;
    return -1;
  }
  if (!only_template_items(path, template)) {
    errno = ENOTEMPTY;
    return -1;
  }
  if (remove_contents(path) != 0) return -1;
  return real_rmdir(path);
}
